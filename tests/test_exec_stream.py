"""A command's output arriving together with the engine's answer to the exec start is
not lost (docker/docker-py#3332): on a loaded machine a quick command's whole output can
come in the same read as the answer's headers, and docker-py's buffered reader kept it.

The race is made certain, whatever reads the answer: Berth talks to the real engine
through a small proxy that holds the answer to an exec start back until the command's
first output is behind it, then delivers both in one write. Real Docker."""

from __future__ import annotations

import secrets
import socket
import threading
import time

import docker
import pytest

from app.runtime import ProvisionError
from app.runtime.docker import DockerRuntime, hijack
from app.runtime.docker.control import CONTROL_IMAGE, EngineControl

pytestmark = pytest.mark.slow

HEAD_END = b"\r\n\r\n"


class LateEngine:
    """A Unix socket in front of the engine's. Each connection is passed on both ways;
    on one that asks to upgrade (an exec start), the answer is held until the command's
    first bytes came after it (or it ended, or 30 s passed), and sent with them at once."""

    def __init__(self, folder, engine_path: str = "/var/run/docker.sock"):
        self.path = str(folder / "engine.sock")
        self.engine_path = engine_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.held = 0  # answers delivered together with output
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.engine_path)
            upgrading = threading.Event()
            threading.Thread(
                target=self._up, args=(client, upstream, upgrading), daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(upstream, client, upgrading), daemon=True
            ).start()

    @staticmethod
    def _up(client, upstream, upgrading) -> None:
        try:
            while data := client.recv(65536):
                if b"Upgrade: tcp" in data:
                    upgrading.set()
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _down(self, upstream, client, upgrading) -> None:
        holding, pending, deadline = False, b"", 0.0
        try:
            while True:
                data = upstream.recv(65536)
                if pending is not None and not holding and upgrading.is_set():
                    holding, deadline = True, time.monotonic() + 30
                if holding:
                    pending += data
                    end = pending.find(HEAD_END)
                    behind = end >= 0 and len(pending) > end + len(HEAD_END)
                    if data and not behind and time.monotonic() < deadline:
                        continue  # the answer alone so far: hold it
                    client.sendall(pending)
                    self.held += behind
                    holding, pending = False, None
                elif data:
                    client.sendall(data)
                if not data:
                    client.shutdown(socket.SHUT_WR)
                    return
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory, docker_client):
    late = LateEngine(tmp_path_factory.mktemp("late-engine"))
    yield late
    late.close()


@pytest.fixture(scope="module")
def runtime(engine, base_image):
    instance = secrets.token_hex(4)
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"
    client = docker.DockerClient(base_url=f"unix://{engine.path}", timeout=120)
    made = DockerRuntime(client, instance, pool, subnet_prefix=28)
    made.ensure_control_image(lambda line: None)
    yield made
    _, resources = made.inventory()
    for found in resources:
        made.remove(found)


@pytest.fixture(scope="module")
def container(runtime, docker_client):
    made = docker_client.containers.run(
        CONTROL_IMAGE,
        ["sleep", "infinity"],
        detach=True,
        labels={"berth.test": runtime.instance},
        name=f"berth-exec-stream-{runtime.instance}",
    )
    yield made
    made.remove(force=True)


def test_a_quick_command_s_output_is_all_there_when_it_comes_with_the_answer(
    runtime, container, engine
):
    held = engine.held
    done = runtime.exec(container.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert engine.held > held  # the race was made, not missed
    assert (done.exit_code, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_a_collected_command_through_the_engine_api_keeps_its_output_and_exit_code(
    runtime, container
):
    """ps and kill through the engine, and the tools bundle's import, read this way."""
    api = runtime.client.api
    created = api.exec_create(container.id, ["sh", "-c", "echo out; echo err >&2; exit 4"])
    code, output = hijack.run_collected(api, created["Id"])
    # The engine copies the two streams apart: their order is not kept.
    assert (code, sorted(output.splitlines())) == (4, [b"err", b"out"])


def test_the_raw_stream_of_a_session_keeps_its_first_bytes(runtime, container):
    """What the SSH gateway reads: `cat ~/note && hostname` gave nothing and exit 0."""
    exec_id, sock = runtime.open_exec(container.id, ["sh", "-c", "echo first; hostname"])
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    frames = hijack.Frames().feed(bytes(received))
    assert b"".join(data for stream, data in frames if stream == 1).startswith(b"first\n")
    assert runtime.exec_exit_code(exec_id) == 0


def test_a_tty_prompt_that_came_with_the_answer_is_readable_at_once(runtime, container):
    """Not kept in a buffer poll cannot see: a shell's prompt shows before any key."""
    exec_id, sock = runtime.open_exec(
        container.id, ["sh", "-c", "printf 'prompt>'; read line; echo got $line"], tty=True
    )
    try:
        sock.settimeout(10)
        assert b"prompt>" in sock.recv(65536)
        sock.sendall(b"yes\n")
        received = bytearray()
        while b"got yes" not in received and (chunk := sock.recv(65536)):
            received += chunk
        assert b"got yes" in received
    finally:
        sock.close()


def test_a_tunnel_through_the_engine_keeps_a_server_s_first_bytes(
    runtime, container, docker_client
):
    """The appliance's path (BERTH_ENGINE_CONTROL=engine): a server that speaks first
    (an SSH or SMTP banner) through the control container's exec."""
    control = EngineControl(runtime.client, runtime.instance, "engine")
    pid = docker_client.api.inspect_container(container.id)["State"]["Pid"]
    container.exec_run(
        ["socat", "TCP-LISTEN:7011,fork,reuseaddr", "SYSTEM:echo banner"], detach=True
    )
    deadline = time.monotonic() + 30
    received = b""
    while not received and time.monotonic() < deadline:
        tunnel = control.connect(container.id, pid, "127.0.0.1", 7011)
        try:
            tunnel.raw.settimeout(10)
            received = tunnel.recv(65536)  # b"": not listening yet
        finally:
            tunnel.close()
    assert received == b"banner\n"


def test_a_refused_start_names_the_problem(runtime):
    with pytest.raises(docker.errors.NotFound, match="No such exec instance"):
        hijack.start_exec(runtime.client.api, "0" * 64, tty=False)
    with pytest.raises(ProvisionError, match="not found"):
        runtime.open_exec("0" * 64, ["true"])


def test_an_engine_over_tls_is_refused_in_words_rather_than_losing_output():
    api = docker.APIClient(base_url="https://127.0.0.1:1", version="1.41")
    with pytest.raises(docker.errors.DockerException, match="Unix socket or plain TCP"):
        hijack.connect(api)
