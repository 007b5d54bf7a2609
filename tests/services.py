"""Real services for the test suite: a Docker engine, PostgreSQL, a running `berth serve`.

Each helper starts what is missing and reuses what already runs, so a second test run on
the same machine is fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s")


def answers(url: str) -> bool:
    """True when ``url`` answers 200 right now."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# --- Docker --------------------------------------------------------------------------


def _docker_answers() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:
        return None


def ensure_docker() -> docker.DockerClient:
    """A client for a running Docker engine, starting ``dockerd`` when none answers."""
    client = _docker_answers()
    if client:
        return client
    if shutil.which("dockerd") is None:
        raise RuntimeError("no Docker engine answers and dockerd is not installed (docker.io)")
    pidfile = Path("/var/run/docker.pid")
    if pidfile.exists():
        pid = pidfile.read_text().strip()
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            pidfile.unlink()  # left by a dockerd that died; it would refuse to start
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "dockerd.log").open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    return wait_until(_docker_answers, timeout=60, interval=0.5, what="dockerd answering")


# --- PostgreSQL ----------------------------------------------------------------------

PG_ROLE = "berth_test"
PG_PASSWORD = "berth-test-password"  # a throwaway role on a loopback-only test cluster


def _as_postgres(*sql: str) -> str:
    args = ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAt"]
    port = os.environ.get("BERTH_TEST_PG_PORT")
    if port:
        args += ["-p", port]
    for statement in sql:
        args += ["-c", statement]
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd="/").stdout


def ensure_postgres() -> str:
    """Start the Debian PostgreSQL cluster if it is down; return a server URL (no database)."""
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], check=True, capture_output=True, text=True
    ).stdout.split("\n")
    clusters = [line.split() for line in listing if line.strip()]
    if not clusters:
        version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
        subprocess.run(["pg_createcluster", version, "main"], check=True, capture_output=True)
        clusters = [[version, "main", "5432", "down"]]
    version, name, port, status = clusters[0][:4]
    if status != "online":
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)
    os.environ["BERTH_TEST_PG_PORT"] = port
    wait_until(lambda: _pg_ready(port), timeout=30, what="PostgreSQL accepting connections")
    _as_postgres(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}') THEN "
        f"CREATE ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'; END IF; END $$"
    )
    return f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{port}"


def _pg_ready(port: str) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]).returncode == 0


def create_database(server_url: str) -> str:
    name = "berth_test_" + secrets.token_hex(4)
    _as_postgres(f"CREATE DATABASE {name} OWNER {PG_ROLE}")
    return f"{server_url}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    assert re.fullmatch(r"berth_test_[0-9a-f]+", name)
    _as_postgres(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- berth itself ----------------------------------------------------------------------


def berth(*args: str, env: dict | None = None, input: str | None = None, check: bool = True):
    """Run the real ``berth`` CLI in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"berth {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class BerthServer:
    process: subprocess.Popen
    url: str
    port: int
    ssh_port: int
    data_dir: Path
    env: dict
    log_path: Path

    def cli(self, *args: str, env: dict | None = None, **kwargs):
        return berth(*args, env={**self.env, **(env or {})}, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


# Data dirs of every `berth serve` this test run started: their instances' engine objects
# are removed when the run ends (remove_engine_objects).
STARTED: list[Path] = []


def remove_engine_objects(data_dirs: list[Path]) -> None:
    """Remove the containers, networks and volumes of the instances of ``data_dirs``:
    this run's own (labelled with their instance ids), nothing of anyone else's. Engine
    objects outlive `berth serve` by design; a test run must not leave them behind
    (each instance's networks hold a /24 of the subnet pool)."""
    client = docker.from_env()
    for data_dir in data_dirs:
        try:
            instance = (data_dir / "instance_id").read_text().strip()
        except OSError:
            continue
        label = {"label": f"berth.instance={instance}"}
        for container in client.containers.list(all=True, filters=label):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
        for network in client.networks.list(filters=label):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
        for volume in client.volumes.list(filters=label):
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


def start_berth_serve(data_dir: Path, extra_env: dict | None = None) -> BerthServer:
    STARTED.append(data_dir)
    port, ssh_port = free_port(), free_port()
    extra_env = {"BERTH_APPS_PORT": str(free_port()), **(extra_env or {})}
    env = {**os.environ, "BERTH_DATA_DIR": str(data_dir), **extra_env}
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--port",
                str(port),
                "--ssh-port",
                str(ssh_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = BerthServer(
        process,
        f"http://127.0.0.1:{port}",
        port,
        ssh_port,
        data_dir,
        {"BERTH_DATA_DIR": str(data_dir), **(extra_env or {})},
        log_path,
    )
    server.apps_port = int(extra_env["BERTH_APPS_PORT"])

    def ready():
        if process.poll() is not None:
            raise RuntimeError(f"berth serve exited with {process.returncode}:\n{server.log()}")
        return answers(server.url + "/login")

    wait_until(ready, timeout=60, what="berth serve answering")
    return server


def web_session(url: str, who: str):
    """A signed-in browser-like session (requests) on the main origin; the password is
    ``<who>-password`` as the test stacks make them."""
    import re

    import requests

    session = requests.Session()
    session.trust_env = False
    page = session.get(url + "/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = session.post(
        url + "/login",
        data={"username": who, "password": f"{who}-password", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert done.status_code == 302, done.text
    return session


def in_thread(func):
    """Run ``func`` on a thread of its own and return its result (or raise its error):
    for asyncio code in tests, since Playwright's sync API keeps an event loop running
    in the main thread once a browser fixture exists."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = func()
        except BaseException as exc:  # noqa: BLE001  (handed back to the caller)
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def role_of(argv: list[str]) -> str | None:
    """Which part of Berth a process is, from its command line: ``python -m app <role>``,
    the web master after its exec (``python -m app.processes.web``), or Caddy."""
    if argv and argv[0].endswith("caddy"):
        return "caddy"
    if argv[1:3] == ["-m", "app"] and len(argv) > 3:
        return argv[3]
    if argv[1:3] == ["-m", "app.processes.web"]:
        return "web"
    return None
