"""Tunnels and ending commands through the engine (BERTH_ENGINE_CONTROL=engine): what the
appliance does, where Berth's services do not see the engine's processes. Driven with the
real OpenSSH client (`ssh -L`, VS Code Remote-SSH's `ssh -T -D`) and the exec API's
timeout against a real `berth serve`."""

from __future__ import annotations

import socket
import subprocess

import docker
import pytest

from app.runtime.docker.control import CONTROL_IMAGE
from tests.conftest import start_stack, stop_stack
from tests.services import free_port, wait_until
from tests.test_ssh import SERVER_SCRIPT, _get, run_vscode_pattern

FIND_SLEEPS = (
    "python3 -c \"import os; print(sum(open(f'/proc/{p}/cmdline').read().startswith("
    "'sleep\\x0030') for p in os.listdir('/proc') if p.isdigit()))\""
)


@pytest.fixture(scope="module")
def engine_stack(tmp_path_factory, docker_client, base_image):
    server = start_stack(tmp_path_factory.mktemp("control"), {"BERTH_ENGINE_CONTROL": "engine"})
    ann = server.clients["ann"]
    key = tmp_path_factory.mktemp("control-keys") / "id_ann"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public_key = key.with_suffix(".pub").read_text()
    ann.call("POST", "/users/me/keys", 201, json={"public_key": public_key})
    server.key = key
    server.ws = ann.create("relay", template="python")
    ann.wait(server.ws["id"], "running")
    yield server
    stop_stack(server)


def ssh_args(server, *extra: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-i", str(server.key), "-p", str(server.ssh_port), *extra, "relay@127.0.0.1",
    ]  # fmt: skip


def test_local_forward_to_the_workspace_loopback_goes_through_the_engine(engine_stack):
    ann = engine_stack.clients["ann"]
    ws_id = engine_stack.ws["id"]
    ann.sh(ws_id, SERVER_SCRIPT)
    port = wait_until(lambda: ann.sh(ws_id, "cat /tmp/port.txt").strip(), 15, what="the port")
    local = free_port()
    tunnel = subprocess.Popen(ssh_args(engine_stack, "-N", "-L", f"{local}:localhost:{port}"))
    try:
        for _ in range(3):  # one tunnel per request, as IDEs open them
            listing = wait_until(
                lambda: _get(f"http://127.0.0.1:{local}/"), 30, what="the forwarded port"
            )
            assert "Directory listing" in listing
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    # It went through the engine: the control container exists, in the engine's pid
    # namespace, with no network and only the capabilities it needs.
    client = docker.from_env()
    control = client.containers.get(f"berth-{engine_stack.instance}-control")
    host_config = control.attrs["HostConfig"]
    assert control.image.tags == [CONTROL_IMAGE]
    assert host_config["PidMode"] == "host" and host_config["NetworkMode"] == "none"
    caps = sorted(cap.removeprefix("CAP_") for cap in host_config["CapAdd"])
    assert caps == ["KILL", "SETGID", "SETUID", "SYS_ADMIN", "SYS_PTRACE"]
    assert [cap.removeprefix("CAP_") for cap in host_config["CapDrop"]] == ["ALL"]


def test_vscode_pattern_script_on_stdin_then_socks_through_the_engine(engine_stack):
    socks = free_port()
    run_vscode_pattern(ssh_args(engine_stack, "-T", "-D", str(socks)), socks)


def test_a_binary_stream_both_ways_with_half_close(engine_stack):
    """A tunnel carries any bytes: 2 MB through a loopback echo server comes back intact,
    and end of input reaches the server."""
    ann = engine_stack.clients["ann"]
    ws_id = engine_stack.ws["id"]
    ann.sh(
        ws_id,
        'nohup python3 -c \'import socket; s=socket.create_server(("127.0.0.1", 0)); '
        "print(s.getsockname()[1], flush=True)\nwhile True:\n c,_=s.accept()\n"
        " while (d:=c.recv(65536)): c.sendall(d)\n c.close()' > /tmp/echo.txt 2>&1 &",
    )
    port = wait_until(lambda: ann.sh(ws_id, "cat /tmp/echo.txt").strip(), 15, what="echo")
    payload = bytes(range(256)) * 8192
    local = free_port()
    tunnel = subprocess.Popen(ssh_args(engine_stack, "-N", "-L", f"{local}:127.0.0.1:{port}"))
    try:

        def echo():
            done = subprocess.run(
                ["python3", "-c", ECHO_CLIENT, str(local)],
                input=payload,
                capture_output=True,
                timeout=60,
            )
            return done.stdout if done.returncode == 0 else None

        assert wait_until(echo, 30, what="the echo through the tunnel") == payload
    finally:
        tunnel.terminate()
        tunnel.wait(10)


ECHO_CLIENT = """
import socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
data = sys.stdin.buffer.read()
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=send).start()
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
if not got:
    sys.exit(1)
sys.stdout.buffer.write(got)
"""


def test_exec_timeout_ends_the_command_and_its_children_through_the_engine(engine_stack):
    ann = engine_stack.clients["ann"]
    ws_id = engine_stack.ws["id"]
    result = ann.exec(ws_id, ["sh", "-c", "sleep 301 & sleep 302; wait"], timeout=2)
    assert result["timed_out"] is True and result["exit_code"] == -1
    wait_until(lambda: ann.sh(ws_id, FIND_SLEEPS).strip() == "0", 20, what="the sleeps to end")


def test_a_tunnel_that_cannot_connect_closes_cleanly(engine_stack):
    """Nothing listens on the port: the forwarded connection closes, the gateway goes on."""
    local = free_port()
    tunnel = subprocess.Popen(ssh_args(engine_stack, "-N", "-L", f"{local}:127.0.0.1:1"))
    try:
        wait_until(lambda: _listening(local), 30, what="ssh listening")
        assert _get(f"http://127.0.0.1:{local}/") is None
        done = subprocess.run(ssh_args(engine_stack) + ["echo still-here"], capture_output=True)
        assert done.stdout == b"still-here\n"
    finally:
        tunnel.terminate()
        tunnel.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def test_a_pid_outside_the_workspace_is_never_entered_nor_signalled(engine_stack, docker_client):
    """What a reused pid would be: a process of the host's (here, one this test started)
    named with the workspace's container id. No tunnel enters its namespace, no signal
    reaches it."""
    from app.runtime.docker.control import EngineControl

    container = docker_client.containers.get(engine_stack.docker_name(engine_stack.ws["id"]))
    control = EngineControl(docker_client, engine_stack.instance, mode="engine")
    outsider = subprocess.Popen(["sleep", "300"])
    try:
        stream = control.connect(container.id, outsider.pid, "127.0.0.1", 22)
        try:
            assert stream.recv(1024) == b""  # refused: end of stream, nothing relayed
        finally:
            stream.close()
        control.end(container.id, outsider.pid, grace_seconds=0)
        assert outsider.poll() is None  # still running: not the workspace's
    finally:
        outsider.kill()
        outsider.wait()


def test_a_removed_control_container_is_made_again_on_the_next_use(engine_stack, docker_client):
    ann = engine_stack.clients["ann"]
    ws_id = engine_stack.ws["id"]
    docker_client.containers.get(f"berth-{engine_stack.instance}-control").remove(force=True)
    # An exec timeout needs it (ps and kill run there): it is made again, and works.
    result = ann.exec(ws_id, ["sh", "-c", "sleep 303 & sleep 304; wait"], timeout=2)
    assert result["timed_out"] is True
    wait_until(lambda: ann.sh(ws_id, FIND_SLEEPS).strip() == "0", 20, what="the sleeps to end")
    assert docker_client.containers.get(f"berth-{engine_stack.instance}-control").status == (
        "running"
    )
