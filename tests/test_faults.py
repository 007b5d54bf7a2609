"""Faults on the real engine: each of `berth serve`'s processes (web, worker, ssh, egress,
caddy) killed with SIGKILL at a random point of a create, start, stop, restart, rebuild
or delete, round after round. After each round the supervisor has brought the process
back and every workspace has settled (running, stopped, failed or deleted: nothing left
in a transitional state); at the end, once everything is deleted, nothing of the
workspaces is left on the engine or in the database.

BERTH_FAULT_ROUNDS (30) sets the number of rounds and BERTH_FAULT_SEED the random
choices; the seed is printed, so a failing run can be replayed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.berthapi import ApiError, Client
from tests.services import (
    free_port,
    remove_engine_objects,
    role_of,
    start_berth_serve,
    wait_until,
)

PROCESSES = ("web", "worker", "ssh", "egress", "caddy")
SETTLED = ("running", "stopped", "failed")
ROUNDS = int(os.environ.get("BERTH_FAULT_ROUNDS", "30"))

pytestmark = pytest.mark.slow


def children(server) -> dict[str, int]:
    """The supervisor's children by name: pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) != server.process.pid:
            continue
        role = role_of([a.decode(errors="replace") for a in argv])
        if role:
            found[role] = int(entry.name)
    return found


def answers(server) -> bool:
    try:
        return requests.get(server.url + "/healthz", timeout=5).ok
    except requests.RequestException:
        return False


def patiently(call, *args, **kwargs):
    """An API call that waits out the web process's restart."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return call(*args, **kwargs)
        except (requests.RequestException, ApiError) as exc:
            if time.monotonic() > deadline:
                raise
            if isinstance(exc, ApiError) and "got 5" not in str(exc):
                raise
            time.sleep(0.5)


def delete_all(api: Client, ids: list[int]) -> None:
    """Delete the workspaces and wait until each is gone (through web restarts too)."""
    for ws_id in ids:
        patiently(api.delete, ws_id)
    for ws_id in ids:
        assert patiently(api.wait, ws_id, "deleted", timeout=300)["status"] == "deleted"


@pytest.fixture
def server(tmp_path, docker_client, base_image):
    berth = start_berth_serve(tmp_path / "data", {"BERTH_LIFECYCLE_INTERVAL": "5"})
    berth.cli("admin", "create-user", "fay", "--password-stdin", input="fay-password\n")
    berth.api = Client(berth.url, berth.cli("token", "create", "fay").stdout.strip())
    berth.instance = (tmp_path / "data" / "instance_id").read_text().strip()
    yield berth
    berth.stop(60)
    remove_engine_objects([berth.data_dir])


def request(api: Client, ws: dict | None, rng: random.Random, n: int) -> tuple[str, int | None]:
    """Ask for an operation the workspace's state allows; return it and the workspace."""
    if ws is None:
        return "create", api.create(f"f{n}", template="base")["id"]
    choices = {
        "running": ("stop", "restart", "rebuild", "delete"),
        "stopped": ("start", "rebuild", "delete"),
        "failed": ("start", "delete"),
    }[ws["status"]]
    operation = rng.choice(choices)
    if operation == "delete":
        api.delete(ws["id"])
    else:
        api.act(ws["id"], operation)
    return operation, ws["id"]


def test_kill_each_process_at_random_points_of_every_operation(server, docker_client):
    seed = int(os.environ.get("BERTH_FAULT_SEED", random.randrange(1 << 30)))
    print(f"BERTH_FAULT_SEED={seed}")
    rng = random.Random(seed)
    api = server.api
    wait_until(lambda: set(children(server)) == set(PROCESSES), 60, what="every process")
    live: dict[int, dict] = {}
    history = []
    for n in range(ROUNDS):
        if not live or (len(live) < 3 and rng.random() < 0.3):
            target = None  # a new workspace
        else:
            target = live[rng.choice(sorted(live))]
        victim = rng.choice(PROCESSES)
        delay = rng.uniform(0, 2.5)
        operation, ws_id = patiently(request, api, target, rng, n)
        # A random point of the operation, not a wait for anything.
        time.sleep(delay)
        pid = children(server).get(victim)
        if pid:
            os.kill(pid, signal.SIGKILL)
        history.append(f"{n}: {operation} {ws_id}, {victim} killed after {delay:.2f}s")
        # Recovery: the process is back, the API answers, every workspace has settled.
        wait_until(
            lambda: set(children(server)) == set(PROCESSES) and answers(server),
            120,
            0.2,
            f"every process back after round {n}",
        )
        if operation == "create":
            live[ws_id] = {"id": ws_id}
        for known in list(live):
            ws = patiently(api.wait, known, *SETTLED, "deleted", timeout=600)
            if ws["status"] == "deleted":
                del live[known]
            else:
                assert ws["status"] in SETTLED, (ws, history)
                live[known] = ws
    print("\n".join(history))
    print("final:", {k: v["status"] for k, v in live.items()})

    delete_all(api, list(live))

    # Nothing of any workspace is left on the engine or in the database.
    labels = {"label": [f"berth.instance={server.instance}", "berth.workspace"]}
    assert docker_client.containers.list(all=True, filters=labels) == []
    assert docker_client.volumes.list(filters=labels) == []
    db = sqlite3.connect(server.data_dir / "berth.db")
    try:
        # Only networks made ahead for the next workspace ids stay (app.workspaces.worker).
        (top,) = db.execute("SELECT max(id) FROM workspaces").fetchone()
        left = {n.name for n in docker_client.networks.list(filters=labels)}
        assert left <= {f"berth-{server.instance}-ws-{top + n}" for n in (1, 2)}, left
        left = db.execute("SELECT id, status FROM workspaces WHERE status != 'deleted'")
        assert left.fetchall() == []
        assert (
            db.execute(
                "SELECT id, kind, status FROM transitions WHERE status IN ('pending', 'running')"
            ).fetchall()
            == []
        )
    finally:
        db.close()


@pytest.fixture
def own_postgres(docker_client):
    """A PostgreSQL cluster of this test's own (others may use the shared one), with a
    database for Berth; yields (URL, restart)."""
    version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
    name = f"fault{os.getpid()}"
    port = str(free_port())
    subprocess.run(
        ["pg_createcluster", version, name, "-p", port, "--start"],
        check=True,
        capture_output=True,
    )
    try:
        psql = ["runuser", "-u", "postgres", "--", "psql", "-p", port, "-qAt", "-c"]
        subprocess.run(
            [*psql, "CREATE ROLE berth LOGIN PASSWORD 'fault-test'"], check=True, cwd="/"
        )
        subprocess.run([*psql, "CREATE DATABASE berth OWNER berth"], check=True, cwd="/")

        def restart() -> None:
            subprocess.run(
                ["pg_ctlcluster", version, name, "restart", "-m", "fast"],
                check=True,
                capture_output=True,
            )

        yield f"postgresql://berth:fault-test@127.0.0.1:{port}/berth", restart
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, name], check=False, capture_output=True
        )


def test_postgresql_restarted_under_load(tmp_path, own_postgres, docker_client, base_image):
    url, restart = own_postgres
    berth = start_berth_serve(tmp_path / "data", {"BERTH_DATABASE_URL": url})
    try:
        berth.cli("admin", "create-user", "pat", "--password-stdin", input="pat-password\n")
        api = Client(berth.url, berth.cli("token", "create", "pat").stdout.strip())
        first = api.wait(api.create("before", template="base")["id"], "running")
        assert first["status"] == "running", api.log(first["id"])

        outcomes: list[int | str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                for method, path, body in (
                    ("GET", "/workspaces", None),
                    ("POST", f"/workspaces/{first['id']}/exec", {"command": ["true"]}),
                ):
                    try:
                        outcomes.append(api.call(method, path, json=body).status_code)
                    except requests.RequestException as exc:
                        outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(outcomes) > 20, 60, what="requests under load")
        restart()
        during = len(outcomes)
        # Served again: a run of successes after the restart.
        wait_until(lambda: outcomes[-8:] == [200] * 8 and len(outcomes) > during + 8, 60,
                   what="requests answered again after the restart")  # fmt: skip
        stop.set()
        for thread in threads:
            thread.join(60)
        # What failed in between failed as a clean refusal, never a broken connection.
        assert set(outcomes) <= {200, 503}, sorted(set(map(str, outcomes)))

        # Nothing lost, and every process writes again: a new workspace and a stop.
        names = [ws["name"] for ws in api.call("GET", "/workspaces", 200).json()]
        assert names == ["before"]
        second = api.wait(api.create("after", template="base")["id"], "running")
        assert second["status"] == "running", api.log(second["id"])
        api.act(first["id"], "stop")
        assert api.wait(first["id"], "stopped")["status"] == "stopped"
        delete_all(api, [first["id"], second["id"]])
    finally:
        berth.stop(60)
        remove_engine_objects([berth.data_dir])


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB ext4 filesystem of this test's own (a loop-mounted image), as the data dir."""
    image, folder = tmp_path / "small.img", tmp_path / "data"
    folder.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write to ``folder``'s filesystem until no byte fits."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
                out.flush()
        with contextlib.suppress(OSError):  # the last blocks, byte by byte-ish
            while True:
                out.write(b"\0" * 4096)
                out.flush()
    return filler


def test_a_full_data_dir_gives_a_clear_error_and_keeps_the_database(
    small_disk, docker_client, base_image
):
    berth = start_berth_serve(small_disk)
    try:
        berth.cli("admin", "create-user", "liz", "--password-stdin", input="liz-password\n")
        api = Client(berth.url, berth.cli("token", "create", "liz").stdout.strip())
        first = api.wait(api.create("before", template="base")["id"], "running")
        assert first["status"] == "running", api.log(first["id"])

        filler = fill(small_disk)
        refused = api.call("POST", "/workspaces", json={"name": "full", "template": "base"})
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "storage_full"
        assert "no space left" in refused.json()["error"]["message"]
        # A read answers, or says the same (SQLite needs to write its shared-memory file
        # when it opens the database afresh).
        listed = api.call("GET", "/workspaces")
        if listed.status_code == 200:
            assert [ws["name"] for ws in listed.json()] == ["before"]
        else:
            assert listed.status_code == 507, listed.text
            assert listed.json()["error"]["code"] == "storage_full"

        # Space again: the database is whole, and everything works as before.
        filler.unlink()
        db = sqlite3.connect(f"file:{small_disk / 'berth.db'}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT name FROM workspaces").fetchall() == [("before",)]
        finally:
            db.close()
        second = api.wait(api.create("after", template="base")["id"], "running")
        assert second["status"] == "running", api.log(second["id"])
        delete_all(api, [first["id"], second["id"]])
    finally:
        berth.stop(60)
        remove_engine_objects([berth.data_dir])
