"""`berth serve`, the CLI and `berth doctor`, run as real processes."""

import os
import signal
import time

import psutil
import pytest
import requests

from tests.services import answers, berth, role_of, start_berth_serve, wait_until


def _children(process, role):
    return [p for p in process.children() if role_of(p.cmdline()) == role]


def _tree(pid):
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def test_serve_boots_serves_and_stops_cleanly(berth_server):
    page = requests.get(berth_server.url + "/login", timeout=5)
    assert page.status_code == 200 and "Log in to Berth" in page.text
    # The supervisor says so after its own look at the port, which may come a moment
    # after the page answered.
    wait_until(
        lambda: f"ready at {berth_server.url}" in berth_server.log(), 30, what="the ready line"
    )
    tree = _tree(berth_server.process.pid)
    assert len(tree) >= 5  # supervisor, gunicorn master and worker, berth worker, caddy
    roles = {role_of(p.cmdline()) for p in tree[0].children()}
    assert roles == {"web", "caddy", "worker", "ssh", "egress"}, berth_server.log()[-3000:]
    assert berth_server.stop() == 0
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == [], [p.cmdline() for p in alive]
    assert "berth: stopped" in berth_server.log()


def test_berth_health_checks_each_part(berth_server):
    # The same settings as the server, which took its ports as flags.
    ports = {"BERTH_PORT": str(berth_server.port), "BERTH_SSH_PORT": str(berth_server.ssh_port)}

    def health(part: str):
        return berth_server.cli("health", part, env=ports, check=False)

    for part in ("web", "worker", "ssh", "egress"):
        wait_until(
            lambda part=part: health(part).returncode == 0,
            timeout=20,
            what=f"berth health {part}",
        )
    heartbeat = berth_server.data_dir / "run" / "worker.alive"
    berth_server.stop()
    os.utime(heartbeat, (time.time() - 120, time.time() - 120))
    stale = health("worker")
    assert stale.returncode == 1
    assert "worker is unhealthy: its main loop has not run for 12" in stale.stderr
    down = health("ssh")
    assert down.returncode == 1 and "ssh is unhealthy" in down.stderr


def test_serve_restarts_a_crashed_child(berth_server):
    supervisor = psutil.Process(berth_server.process.pid)
    (web,) = _children(supervisor, "web")
    os.kill(web.pid, signal.SIGKILL)
    wait_until(lambda: "restarted" in berth_server.log(), timeout=20, what="web restart")
    wait_until(lambda: answers(berth_server.url + "/login"), timeout=30, what="login page")
    (new_web,) = _children(supervisor, "web")
    assert new_web.pid != web.pid
    assert "web exited with code -9" in berth_server.log()


def test_serve_refuses_a_busy_port(berth_server, tmp_path):
    result = berth(
        "serve",
        "--data-dir",
        str(tmp_path / "other"),
        "--port",
        str(berth_server.port),
        check=False,
    )
    assert result.returncode == 2
    assert f"port {berth_server.port} on 127.0.0.1 is in use" in result.stderr


def test_first_admin_logs_in_through_the_api_and_cli(berth_server):
    created = berth_server.cli(
        "admin", "create-user", "first", "--admin", "--password-stdin", input="first-password\n"
    )
    assert "created admin first" in created.stderr
    duplicate = berth_server.cli(
        "admin", "create-user", "first", "--password-stdin", input="first-password\n", check=False
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    made = berth_server.cli("token", "create", "first", "--name", "script", "--expires", "2h")
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("berth_")  # the token alone
    me = requests.get(
        berth_server.url + "/api/v2/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert me.status_code == 200 and me.json()["role"] == "admin"

    listing = berth_server.cli("token", "list", "first").stdout
    assert "script" in listing and "active" in listing and token not in listing
    token_id = listing.split("\t")[0]
    berth_server.cli("token", "revoke", token_id)
    me = requests.get(
        berth_server.url + "/api/v2/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert me.status_code == 401 and me.json()["error"]["code"] == "token_revoked"

    bad = berth_server.cli("token", "create", "first", "--expires", "soon", check=False)
    assert bad.returncode == 2 and "--expires: 'soon' is not a duration" in bad.stderr
    nobody = berth_server.cli("token", "create", "nobody", check=False)
    assert nobody.returncode == 1 and "no user named 'nobody'" in nobody.stderr


def test_cli_acts_on_postgres_when_the_url_says_so(postgres_url, tmp_path):
    env = {"BERTH_DATA_DIR": str(tmp_path), "BERTH_DATABASE_URL": postgres_url}
    berth("admin", "create-user", "pg-user", "--password-stdin", input="pg-password\n", env=env)
    assert "pg-user\tmember\tactive" in berth("admin", "list-users", env=env).stdout
    assert (
        "pg-user" not in berth("admin", "list-users", env={"BERTH_DATA_DIR": str(tmp_path)}).stdout
    )


def test_a_database_that_does_not_answer_is_named(tmp_path):
    env = {
        "BERTH_DATA_DIR": str(tmp_path),
        "BERTH_DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/berth",
    }
    result = berth("migrate", env=env, check=False)
    assert result.returncode == 2
    assert "BERTH_DATABASE_URL: cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_when_docker_is_fine(docker_client, tmp_path):
    berth("migrate", env={"BERTH_DATA_DIR": str(tmp_path)})
    result = berth("doctor", env={"BERTH_DATA_DIR": str(tmp_path)}, check=False)
    assert result.returncode == 0, result.stdout
    assert "[ok  ] Docker engine: Docker Engine" in result.stdout
    assert "[ok  ] Database: SQLite answers; schema version" in result.stdout
    assert "[ok  ] Caddy: Caddy v2.1" in result.stdout
    assert "Browser IDE: " in result.stdout  # ok, or a warning until the bundle is built
    assert "[ok  ] Base image: berth-base:bookworm" in result.stdout or (
        "[WARN] Base image" in result.stdout
    )
    assert (
        "Everything Berth needs is in order." in result.stdout or "Berth can run;" in result.stdout
    )


def test_doctor_when_docker_is_unreachable(tmp_path):
    env = {"BERTH_DATA_DIR": str(tmp_path), "BERTH_DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    result = berth("doctor", env=env, check=False)
    assert result.returncode == 1
    assert "[FAIL] Docker engine: unreachable at unix:///nonexistent/docker.sock" in result.stdout
    assert "fix: Start the engine" in result.stdout
    assert "[WARN] Database: SQLite file" in result.stdout  # nothing created yet
    assert "1 problem(s) to fix." in result.stdout
    assert not (tmp_path / "berth.db").exists()


def test_two_instances_side_by_side(berth_server, tmp_path):
    other = start_berth_serve(tmp_path / "second")
    try:
        assert other.port != berth_server.port
        assert requests.get(other.url + "/login", timeout=5).status_code == 200
    finally:
        assert other.stop() == 0


def test_without_an_engine_serve_says_so_once_and_waits(tmp_path):
    """A fresh machine where dockerd is not running yet: one line naming the socket and
    how to start the engine, no traceback, and Ctrl-C ends the wait."""
    import subprocess
    import sys

    from tests.services import free_port

    env = {
        **os.environ,
        "BERTH_DATA_DIR": str(tmp_path / "data"),
        "BERTH_DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "BERTH_APPS_PORT": str(free_port()),
        "PYTHONFAULTHANDLER": "1",  # a stack dump if it ever does not end (below)
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        env=env,
        # As from a terminal: an earlier test may leave SIGINT ignored in this process,
        # and an ignored signal stays ignored in a child (Python then installs no
        # KeyboardInterrupt handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
        while line.startswith("berth: database migrated"):
            line = process.stdout.readline()
        assert "no Docker engine answers at unix:///nonexistent/docker.sock" in line
        assert "dockerd &" in line and "waiting" in line
        assert process.poll() is None  # waiting, not exiting
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest = process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler prints where it hangs
            pytest.fail(f"serve did not end on SIGINT:\n{process.communicate(timeout=30)[0]}")
    assert "Traceback" not in rest and process.returncode == 130
