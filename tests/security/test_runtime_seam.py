"""Attacks on what the web tier and the SSH gateway now take from the database instead of
the engine (the Placement the worker records), and on the egress gateway's question to
the runtime: a stale or foreign record must never send one person's traffic, commands
or allowlist to another workspace."""

from __future__ import annotations

import secrets

import docker
import pytest

from app.db import database
from app.models import Workspace
from app.runtime import WorkspaceRef
from app.runtime.docker import DockerRuntime, names
from tests.security.conftest import call
from tests.security.test_web_sessions import ide_headers
from tests.test_web import login


@pytest.fixture(autouse=True)
def _no_remembered_grants(monkeypatch):
    """Each request decided afresh: no yes remembered from an earlier one."""
    from app.web import apps as web_apps

    monkeypatch.setattr(web_apps, "GRANT_SECONDS", 0.0)
    monkeypatch.setattr(web_apps, "_grants", {})


def _authorize(app, ws_id: int):
    """The IDE of ``ws_id`` as Caddy asks for it, with mia signed in on the apps origin."""
    client = app.test_client()
    login(client, "mia", "mia-password")
    headers = ide_headers(app, client, ws_id)
    return app.test_client(use_cookies=False).get("/_berth/authorize", headers=headers)


@pytest.mark.parametrize("status", ["stopped", "stopping", "failed", "deleting", "pooled"])
def test_a_recorded_address_is_used_only_while_the_workspace_runs(app, shared_ws, status):
    with database.connection_context():  # a stale record: the address of an earlier start
        Workspace.update(status=status, container_id="c" * 64, address="10.231.0.9").where(
            Workspace.id == shared_ws
        ).execute()
    refused = _authorize(app, shared_ws)
    assert refused.status_code in (503, 403, 404)
    assert "X-Berth-Upstream" not in refused.headers


def test_the_running_workspace_s_recorded_address_is_the_one_used(app, shared_ws):
    with database.connection_context():
        Workspace.update(status="running", container_id="c" * 64, address="10.231.0.9").where(
            Workspace.id == shared_ws
        ).execute()
    granted = _authorize(app, shared_ws)
    assert granted.status_code == 200
    assert granted.headers["X-Berth-Upstream"] == "10.231.0.9:13337"
    with database.connection_context():  # started but not reachable yet: no address
        Workspace.update(address=None).where(Workspace.id == shared_ws).execute()
    assert "X-Berth-Upstream" not in _authorize(app, shared_ws).headers


def test_exec_into_a_container_removed_outside_berth_is_a_clear_409(app, tokens, shared_ws):
    """The record names a container the engine no longer has (removed behind Berth's
    back): the runtime says so, nothing runs anywhere else, and the answer is no 500."""
    with database.connection_context():
        Workspace.update(
            status="running", container_id=secrets.token_hex(32), runtime_host="local"
        ).where(Workspace.id == shared_ws).execute()
    done = call(
        app.test_client(), tokens["mia"], "POST", f"/workspaces/{shared_ws}/exec",
        json={"command": ["id"]},
    )  # fmt: skip
    assert done.status_code == 409, done.get_data(as_text=True)
    assert done.get_json()["error"]["code"] == "runtime_refused"
    assert "not running or not there" in done.get_json()["error"]["message"]
    assert "No such container" not in done.get_data(
        as_text=True
    )  # the engine's words stay in the log
    with database.connection_context():  # never recorded where it runs: not running to exec
        Workspace.update(runtime_host=None).where(Workspace.id == shared_ws).execute()
    done = call(
        app.test_client(), tokens["mia"], "POST", f"/workspaces/{shared_ws}/exec",
        json={"command": ["id"]},
    )  # fmt: skip
    assert (done.status_code, done.get_json()["error"]["code"]) == (409, "not_running")


@pytest.mark.slow
def test_the_egress_gateway_never_attributes_another_instance_s_container(base_image):
    """Another Berth on the same engine, or anything else, that attaches a container to
    this instance's egress network with a workspace label gets no allowlist here."""
    client = docker.from_env(timeout=60)
    mine, theirs = secrets.token_hex(4), secrets.token_hex(4)
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"
    runtime = DockerRuntime(client, mine, pool, subnet_prefix=28)
    network = runtime.networks.ensure_egress_network()
    made = []
    try:
        for instance, ws_id in ((theirs, 41), (mine, 42)):
            labels = {
                **names.labels(WorkspaceRef(instance, ws_id, "x", "y")),
                "berth.role": "workspace",
            }
            container = client.containers.run(
                base_image, ["sleep", "60"], labels=labels, network=network.name, detach=True
            )
            made.append(container)
        addresses = []
        for container in made:
            container.reload()
            addresses.append(
                container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
            )
        assert runtime.owner_on_egress(addresses[0]) is None  # another instance's label
        assert runtime.owner_on_egress(addresses[1]) == 42  # this instance's own
        assert runtime.owner_on_egress("10.255.255.254") is None  # nobody's
    finally:
        for container in made:
            container.remove(force=True)
        network.remove()
