"""Isolation of workspaces, each property checked on real containers
(the facts behind each choice: shared/notes/security.md)."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

PTRACE_PROBE = (
    "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
    "r = libc.ptrace(0, 0, 0, 0); print(r, os.strerror(ctypes.get_errno()) if r else 'ok')"
)
VSOCK_PROBE = (
    "import socket\ntry:\n    socket.socket(40, socket.SOCK_STREAM)\n    print('opened')\n"
    "except OSError as e:\n    print(e.strerror)"
)


@pytest.fixture(scope="module")
def pair(stack):
    """Two agent sandboxes of one member and a base workspace of another."""
    ann, bob = stack.clients["ann"], stack.clients["bob"]
    a = ann.create("iso-a", template="agent-sandbox")
    b = ann.create("iso-b", template="agent-sandbox")
    human = bob.create("human", template="base")
    for client, ws in ((ann, a), (ann, b), (bob, human)):
        assert client.wait(ws["id"], "running", "failed")["status"] == "running", client.log(
            ws["id"]
        )
    yield {"a": a["id"], "b": b["id"], "human": human["id"]}
    for client, ws in ((ann, a), (ann, b), (bob, human)):
        client.delete(ws["id"])
    for client, ws in ((ann, a), (ann, b), (bob, human)):
        client.wait(ws["id"], "deleted", timeout=120)


def _inspect(stack, docker_client, ws_id):
    return docker_client.containers.get(stack.docker_name(ws_id)).attrs


def test_container_settings(stack, pair, docker_client):
    human = _inspect(stack, docker_client, pair["human"])
    host = human["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
    ]
    assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
    assert "no-new-privileges" not in host["SecurityOpt"]  # people keep sudo
    assert host["PidsLimit"] == 4096
    assert host["Memory"] == 4096 * 1024**2 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 2 * 10**9
    assert not host.get("PortBindings") and not human["NetworkSettings"]["Ports"]
    assert not any("docker.sock" in (m.get("Source") or "") for m in human["Mounts"])
    assert list(human["NetworkSettings"]["Networks"]) == [stack.docker_name(pair["human"])]

    agent = _inspect(stack, docker_client, pair["a"])["HostConfig"]
    assert agent["ReadonlyRootfs"] is True
    assert "no-new-privileges" in agent["SecurityOpt"]
    assert "AUDIT_WRITE" not in agent["CapAdd"]
    assert agent["PidsLimit"] == 512 and agent["Memory"] == 1024 * 1024**2
    assert agent["Memory"] == agent["MemorySwap"]
    assert "/tmp" in agent["Tmpfs"]


def _network(stack, docker_client, ws_id) -> tuple[str, dict]:
    """The one network of a workspace's container: (name, its settings there)."""
    networks = _inspect(stack, docker_client, ws_id)["NetworkSettings"]["Networks"]
    assert len(networks) == 1
    return next(iter(networks.items()))


def test_subnets_come_from_berths_pool(stack, pair, docker_client):
    names = {k: _network(stack, docker_client, pair[k])[0] for k in ("a", "b", "human")}
    # People get a network each; sandboxes share the internal egress network, where
    # they cannot talk to each other (no inter-container traffic).
    assert names["human"] == stack.docker_name(pair["human"])
    assert names["a"] == names["b"] == f"berth-{stack.instance}-egress"
    egress = docker_client.networks.get(names["a"]).attrs
    assert egress["Internal"] is True
    assert egress["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    subnets = {
        docker_client.networks.get(n).attrs["IPAM"]["Config"][0]["Subnet"]
        for n in set(names.values())
    }
    assert len(subnets) == 2 and all(s.startswith("10.231.") for s in subnets)


def test_seccomp_blocks_io_uring_vsock_and_agent_ptrace(stack, pair):
    ann, bob = stack.clients["ann"], stack.clients["bob"]
    # io_uring_setup (425) is refused in both profiles; perl-base is in every Debian image.
    uring = "perl -e '$p = chr(0) x 120; $r = syscall(425, 1, $p); print \"$r $!\\n\"'"
    assert bob.sh(pair["human"], uring).strip() == "-1 Operation not permitted"
    assert ann.sh(pair["a"], uring).strip() == "-1 Operation not permitted"
    assert ann.sh(pair["a"], f'python3 -c "{VSOCK_PROBE}"').strip() == "Operation not permitted"
    assert ann.sh(pair["a"], f'python3 -c "{PTRACE_PROBE}"').strip() == (
        "-1 Operation not permitted"
    )
    # People's workspaces keep ptrace (debuggers work there).
    traced = bob.sh(pair["human"], "perl -e '$r = syscall(101, 0, 0, 0, 0); print \"$r\\n\"'")
    assert traced.strip() == "0"
    # unshare (new namespaces) is refused for everyone, root included.
    result = bob.exec(pair["human"], ["sudo", "unshare", "-U", "true"])
    assert result["exit_code"] != 0 and "Operation not permitted" in result["stderr"]


def test_people_have_sudo_agents_do_not(stack, pair):
    bob, ann = stack.clients["bob"], stack.clients["ann"]
    assert bob.sh(pair["human"], "sudo -n id -u").strip() == "0"
    result = ann.exec(pair["a"], ["sh", "-c", "command -v sudo || echo no-sudo"])
    assert result["stdout"].strip() == "no-sudo"


def test_agent_root_filesystem_is_read_only(stack, pair):
    ann = stack.clients["ann"]
    result = ann.exec(
        pair["a"],
        [
            "sh",
            "-c",
            "touch /usr/local/x 2>&1; touch /etc/x 2>&1; "
            "touch /tmp/ok ~/ok /workspaces/sandbox/ok && echo writable-ok",
        ],
    )
    assert result["stdout"].count("Read-only file system") == 2
    assert result["stdout"].strip().endswith("writable-ok"), result["stderr"]


def test_limits_are_enforced(stack, pair):
    ann = stack.clients["ann"]
    result = ann.exec(
        pair["a"], ["python3", "-c", "b = bytearray(1500 * 1024 * 1024); print('allocated')"]
    )
    assert result["exit_code"] == 137 or "MemoryError" in result["stderr"]
    forks = ann.exec(
        pair["a"],
        ["sh", "-c", "for i in $(seq 600); do sleep 5 & done 2>&1 | grep -c -i 'fork' || true"],
        timeout=30,
    )
    assert int(forks["stdout"].strip() or 0) > 0


def test_workspaces_cannot_reach_each_other(stack, pair, docker_client):
    ann = stack.clients["ann"]
    ann.exec(
        pair["a"], ["sh", "-c", "cd /tmp && nohup python3 -m http.server 8000 >/dev/null 2>&1 &"]
    )
    ip_a = _network(stack, docker_client, pair["a"])[1]["IPAddress"]
    # Berth itself (the host) reaches the workspace...
    reached = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--retry",
            "10",
            "--retry-connrefused",
            "--retry-delay",
            "1",
            f"http://{ip_a}:8000/",
        ],
        capture_output=True,
        text=True,
    )
    assert reached.stdout == "200"
    # ...and the server answers inside A, but B cannot reach it.
    assert ann.sh(pair["a"], "curl -s -o /dev/null -w '%{http_code}' localhost:8000") == "200"
    from_b = ann.exec(
        pair["b"], ["curl", "-s", "--noproxy", "*", "--max-time", "3", f"http://{ip_a}:8000/"]
    )
    assert from_b["exit_code"] != 0
    # Nor through the egress proxy, which refuses what is not on B's allowlist.
    proxied = ann.exec(pair["b"], ["curl", "-s", "--max-time", "3", f"http://{ip_a}:8000/"])
    assert f"{ip_a}:8000 is not in the allowlist" in proxied["stdout"]


@pytest.fixture
def host_service():
    """A TCP service on all host addresses, standing in for a control-plane port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))  # noqa: S104  (it must be reachable on every address)
    server.listen()
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_workspaces_cannot_reach_the_host_ports(stack, pair, docker_client, host_service):
    human = _inspect(stack, docker_client, pair["human"])
    network = human["NetworkSettings"]["Networks"][stack.docker_name(pair["human"])]
    gateway = network["Gateway"]
    host_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[0]
    # The host reaches its own service on those addresses...
    for address in (gateway, host_ip):
        local = subprocess.run(
            ["curl", "-s", "--max-time", "3", f"http://{address}:{host_service}/"],
            capture_output=True,
            text=True,
        )
        assert local.stdout == "ok", address
    # ...a workspace does not, neither through its bridge gateway nor the host's address.
    bob = stack.clients["bob"]
    for address in (gateway, host_ip):
        result = bob.exec(
            pair["human"], ["curl", "-s", "--max-time", "3", f"http://{address}:{host_service}/"]
        )
        assert result["exit_code"] != 0 and result["stdout"] != "ok", address
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert "-A INPUT -i berth+ -j DROP" in rules
