"""Fixtures on real services. Tests that use Docker, PostgreSQL, Chromium or a running
``berth serve`` are marked ``slow``; ``tests/run.sh -m "not slow"`` skips them."""

from __future__ import annotations

import pytest

from app import migrations
from app.config import Settings
from app.db import open_database
from tests import services

# --- the real services ------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    return services.ensure_docker()


@pytest.fixture(scope="session")
def base_image(docker_client):
    """The local Debian base image, built with mmdebstrap when absent."""
    from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image

    ensure_base_image(docker_client, BASE_IMAGE, on_log=print)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def tools_bundle(docker_client, base_image):
    """The code-server tools bundle in its Docker volume, built once per host (minutes)."""
    from app.runtime.docker import tools

    tools.ensure(docker_client, on_log=print)
    return tools.VOLUME


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a running PostgreSQL server (no database part)."""
    return services.ensure_postgres()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    url = services.create_database(postgres_server)
    yield url
    services.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The same test on an empty SQLite file and on an empty PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/berth.db"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def instance(database_url, tmp_path):
    """Settings and a migrated, connected database on each engine."""
    settings = Settings.load(
        {"data_dir": str(tmp_path / "data"), "database_url": database_url}, environ={}
    )
    settings.ensure_data_dir()
    db = open_database(settings)
    db.connect(reuse_if_open=True)
    migrations.upgrade(db)
    yield settings
    db.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def berth_server(tmp_path):
    """A real ``berth serve`` on free ports with its own data dir, stopped afterwards."""
    server = services.start_berth_serve(tmp_path / "data")
    yield server
    server.stop()


SLOW_FIXTURES = {
    "tools_bundle",
    "docker_client",
    "base_image",
    "postgres_server",
    "postgres_url",
    "browser",
    "page",
    "berth_server",
}


def pytest_sessionfinish(session):
    """What this run's `berth serve`s left on the engine goes (tests/services.py)."""
    if services.STARTED:
        services.remove_engine_objects(services.STARTED)


def pytest_collection_modifyitems(items):
    """Mark every test that needs a real service as slow, so none is forgotten."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        if on_postgres or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


def start_stack(root, extra_env: dict | None = None):
    """A real ``berth serve`` (web + worker + ssh) with an admin and two members, each
    with a token; ``stop_stack`` deletes what they left and stops it."""
    from tests.berthapi import Client

    repos = root / "repos"
    repos.mkdir()
    server = services.start_berth_serve(
        root / "data", {"BERTH_LOCAL_REPO_ROOTS": str(repos), **(extra_env or {})}
    )
    clients = {}
    for name, admin in (("boss", True), ("ann", False), ("bob", False)):
        server.cli(
            "admin",
            "create-user",
            name,
            *(["--admin"] if admin else []),
            "--password-stdin",
            input=f"{name}-password\n",
        )
        token = server.cli("token", "create", name).stdout.strip()
        clients[name] = Client(server.url, token)
    server.repos = repos
    server.clients = clients
    instance = server.instance = (root / "data" / "instance_id").read_text().strip()
    server.docker_name = lambda ws_id, suffix="": f"berth-{instance}-ws-{ws_id}{suffix}"
    return server


def stop_stack(server) -> None:
    clients = server.clients
    for client in clients.values():
        for ws in client.call("GET", "/workspaces").json():
            if ws["owner"] == [k for k, v in clients.items() if v is client][0]:
                client.call("DELETE", f"/workspaces/{ws['id']}")
    for client in clients.values():
        for ws in client.call("GET", "/workspaces").json():
            client.wait(ws["id"], "deleted", timeout=120)
    assert server.stop() == 0
    services.remove_engine_objects([server.data_dir])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client, base_image):
    server = start_stack(tmp_path_factory.mktemp("stack"))
    yield server
    stop_stack(server)


SLOW_FIXTURES.add("stack")
