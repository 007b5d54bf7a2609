"""A Docker engine restart (an engine upgrade, a host reboot) under a running Berth: every
workspace comes back in the state Berth recorded. Running ones run again and are set up
again as after any start (postStartCommand runs again, a sandbox gets its token back);
stopped ones stay stopped; Berth's own processes wait the outage out.

The engine restarted is one of the test's own: a second dockerd in a network namespace of
its own (so its bridges and firewall rules touch nothing of the host's engine), with the
`berth serve` under test in the same namespace, as the appliance runs Berth in its
engine's. The test reaches it through a veth pair."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import pytest

from tests.berthapi import Client
from tests.dcfiles import git_repo
from tests.services import berth, free_port, wait_until


def inside(netns: str) -> list[str]:
    """The argv prefix that runs a command in network namespace ``netns``, and only that:
    `ip netns exec` would also mount a sysfs of its own, hiding the host's cgroups."""
    return ["nsenter", f"--net=/run/netns/{netns}"]


class Engine:
    """A dockerd of the test's own in network namespace ``netns``."""

    def __init__(self, netns: str, root: Path):
        self.netns = netns
        self.root = root
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> docker.DockerClient:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *inside(self.netns), "dockerd",
                    "--data-root", str(self.root / "data"),
                    "--exec-root", str(self.root / "x"),
                    "--pidfile", str(self.root / "dockerd.pid"),
                    "-H", self.url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

        def answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(docker.errors.DockerException):
                return docker.DockerClient(base_url=self.url, timeout=120).ping()
            return False

        wait_until(answers, 120, what="the test's own dockerd answering")
        return docker.DockerClient(base_url=self.url, timeout=120)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(120)


@pytest.fixture
def own_engine(docker_client, base_image):
    """A dockerd in a network namespace of its own, with the base image, and a veth pair
    from the host (``host_address``) to the namespace (``address``)."""
    tag = str(os.getpid() % 100000)
    netns, host_if, ns_if = f"berth-t{tag}", f"bth{tag}", f"btn{tag}"
    net = os.getpid() % 250
    host_address, address = f"10.229.{net}.1", f"10.229.{net}.2"
    root = Path(tempfile.mkdtemp(prefix="be", dir="/tmp"))  # short: socket paths
    engine = Engine(netns, root)

    def ip(*args, inside=False):
        argv = ["ip", "netns", "exec", netns, "ip", *args] if inside else ["ip", *args]
        subprocess.run(argv, check=True, capture_output=True)

    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        ip("link", "set", "lo", "up", inside=True)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", netns)
        ip("addr", "add", f"{host_address}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("addr", "add", f"{address}/30", "dev", ns_if, inside=True)
        ip("link", "set", ns_if, "up", inside=True)
        client = engine.start()
        save = subprocess.Popen(["docker", "save", base_image], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "-H", engine.url, "load", "-q"],
            stdin=save.stdout,
            check=True,
            capture_output=True,
        )
        assert save.wait() == 0
        engine.client = client
        engine.address = address
        yield engine
    finally:
        with contextlib.suppress(Exception):
            for container in engine.client.containers.list(all=True):
                container.remove(force=True)
        engine.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        subprocess.run(["umount", "-R", str(root / "data")], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def serve_inside(engine: Engine, data_dir: Path, repos: Path) -> tuple[subprocess.Popen, str]:
    port, ssh_port = free_port(), free_port()
    env = {
        **os.environ,
        "BERTH_DATA_DIR": str(data_dir),
        "DOCKER_HOST": engine.url,
        "BERTH_LOCAL_REPO_ROOTS": str(repos),
        "BERTH_APPS_PORT": str(free_port()),
        "BERTH_RECONCILE_INTERVAL": "2",
    }
    log = (data_dir.parent / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            *inside(engine.netns), sys.executable, "-m", "app", "serve",
            "--host", engine.address, "--port", str(port), "--ssh-port", str(ssh_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, f"http://{engine.address}:{port}"


def test_every_workspace_comes_back_as_recorded_after_an_engine_restart(tmp_path, own_engine):
    data_dir, repos = tmp_path / "data", tmp_path / "repos"
    data_dir.mkdir()
    repos.mkdir()
    # Each start of the container adds a line (the file is in the container's own layer,
    # which a restart keeps).
    repo = git_repo(
        repos / "app",
        {
            ".devcontainer/devcontainer.json": (
                '{"image": "berth-base:bookworm",'
                ' "postStartCommand": "date +%s.%N >> /var/tmp/starts"}'
            )
        },
    )
    env = {"BERTH_DATA_DIR": str(data_dir), "DOCKER_HOST": own_engine.url}
    berth("admin", "create-user", "ann", "--password-stdin", input="ann-password\n", env=env)
    process, url = serve_inside(own_engine, data_dir, repos)
    try:
        wait_until(
            lambda: process.poll() is None and _answers(url + "/healthz"),
            60,
            what="berth serve answering in the namespace",
        )
        ann = Client(url, berth("token", "create", "ann", env=env).stdout.strip())
        busy = ann.create("busy", repo={"url": repo})
        resting = ann.create("resting", repo={"url": repo})
        for ws in (busy, resting):
            ann.wait(ws["id"], "running", timeout=300)
        ann.act(resting["id"], "stop")
        ann.wait(resting["id"], "stopped", timeout=120)

        def starts(ws_id: int) -> int:
            result = ann.exec(ws_id, ["wc", "-l", "/var/tmp/starts"])
            return int(result["stdout"].split()[0]) if result["exit_code"] == 0 else 0

        assert starts(busy["id"]) == 1

        own_engine.stop()
        own_engine.start()

        # The engine starts `busy` again by itself; Berth sets it up again, once.
        def set_up_again() -> list[dict]:
            history = ann.call("GET", f"/workspaces/{busy['id']}/history", 200).json()
            return [t for t in history["transitions"] if t["actor"] == "reconcile"]

        wait_until(
            lambda: [t["status"] for t in set_up_again()] == ["succeeded"],
            180,
            what="the running workspace set up again",
        )
        again = set_up_again()
        assert again[0]["kind"] == "start"
        assert _status(ann, busy["id"]) == "running" and starts(busy["id"]) == 2
        assert "the engine started the container again" in again[0]["reason"]
        # What Berth stopped stays stopped.
        assert _status(ann, resting["id"]) == "stopped"
        names = {c.name: c.status for c in own_engine.client.containers.list(all=True)}
        assert [s for n, s in names.items() if n.endswith(f"-ws-{resting['id']}")] == ["exited"]
        # And stays set up once: a few reconciles later, no second start.
        before, runs = starts(busy["id"]), _reconciles(data_dir)
        wait_until(lambda: _reconciles(data_dir) >= runs + 2, 60, what="two more reconciles")
        assert starts(busy["id"]) == before
        assert process.poll() is None, "berth serve died during the engine's restart"
        ann.act(resting["id"], "start")
        ann.wait(resting["id"], "running", timeout=120)
        assert starts(resting["id"]) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def _answers(url: str) -> bool:
    import requests

    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=2).status_code == 200
    return False


def _reconciles(data_dir: Path) -> int:
    """How many times the worker's reconcile has run (from its scheduled-jobs row)."""
    with contextlib.closing(sqlite3.connect(data_dir / "berth.db")) as db:
        row = db.execute("SELECT runs FROM scheduled_jobs WHERE name = 'reconcile'").fetchone()
    return row[0] if row else 0


def _status(client: Client, ws_id: int) -> str:
    return client.get(ws_id)["status"]
