"""Benchmark: the SSH gateway against direct `docker exec -i` on the same workspace, in
one run. Throughput up and down (50 MB through exec, through `ssh -L` to a server on the
workspace's loopback), and interactive round trip (a byte echoed through a pty).

Targets: at least 100 MB/s and at least 0.5x of direct docker exec, for each gateway path;
the gateway is measured with OpenSSH's own cipher choice and as `berth config-ssh` sets
clients up (AES-GCM first).
Run: python bench/ssh_gateway.py [megabytes] [rounds]
"""

from __future__ import annotations

import os
import select
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from app.ssh.client_config import CIPHERS  # noqa: E402
from tests import services  # noqa: E402
from tests.berthapi import Client  # noqa: E402

TARGET_RATIO = 0.5  # of docker exec -i
TARGET_MB_S = 100


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main(megabytes: int = 50, rounds: int = 3) -> None:
    client = docker.from_env(timeout=600)
    ensure_base_image(client, BASE_IMAGE)
    root = Path(tempfile.mkdtemp(prefix="berth-bench-ssh-"))
    server = services.start_berth_serve(root / "data")
    size = megabytes * 1024 * 1024
    payload = root / "payload.bin"
    payload.write_bytes(os.urandom(size))
    rows: dict[str, list[float]] = {}
    try:
        server.cli("admin", "create-user", "bench", "--password-stdin", input="bench-password\n")
        api = Client(server.url, server.cli("token", "create", "bench").stdout.strip())
        key = root / "id_bench"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        api.call(
            "POST", "/users/me/keys", 201, json={"public_key": (root / "id_bench.pub").read_text()}
        )
        ws = api.create("bench", template="python")
        api.wait(ws["id"], "running", timeout=900)
        container = f"berth-{(root / 'data' / 'instance_id').read_text().strip()}-ws-{ws['id']}"
        ssh = [
            "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(server.ssh_port),
        ]  # fmt: skip
        target = "bench@127.0.0.1"
        # What `berth config-ssh` writes for each workspace: the gateway's fastest cipher
        # first (OpenSSH by itself picks AES-CTR).
        tuned = ["-o", f"Ciphers={CIPHERS}"]
        docker_exec = ["docker", "exec", "-i", "-u", "dev", container]

        def run(argv, stdin=None, stdout=subprocess.DEVNULL):
            with open(stdin or os.devnull, "rb") as source:
                subprocess.run(argv, stdin=source, stdout=stdout, check=True)

        for _ in range(rounds):
            rows.setdefault("upload: docker exec -i", []).append(
                timed(lambda: run([*docker_exec, "sh", "-c", "cat > /dev/null"], payload))
            )
            rows.setdefault("upload: ssh (gateway)", []).append(
                timed(lambda: run([*ssh, target, "cat > /dev/null"], payload))
            )
            rows.setdefault("upload: ssh, config-ssh", []).append(
                timed(lambda: run([*ssh, *tuned, target, "cat > /dev/null"], payload))
            )
            rows.setdefault("download: docker exec -i", []).append(
                timed(lambda: run([*docker_exec, "head", "-c", str(size), "/dev/zero"]))
            )
            rows.setdefault("download: ssh (gateway)", []).append(
                timed(lambda: run([*ssh, target, f"head -c {size} /dev/zero"]))
            )
            rows.setdefault("download: ssh, config-ssh", []).append(
                timed(lambda: run([*ssh, *tuned, target, f"head -c {size} /dev/zero"]))
            )

        # ssh -L to a sink/source server on the workspace's own loopback.
        server_script = (
            "import socket\n"
            "s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
            "print(s.getsockname()[1], flush=True)\n"
            "while True:\n"
            "    c,_=s.accept(); mode=c.recv(1)\n"
            "    try:\n"
            "        if mode==b'u':\n"
            "            while c.recv(1<<20): pass\n"
            "            c.sendall(b'k')\n"
            "        elif mode==b'd':\n"
            f"            c.sendall(bytes({size}))\n"
            "    except OSError: pass\n"
            "    c.close()\n"
        )
        remote = subprocess.Popen(
            [*ssh, target, "python3 -u -c " + shlex.quote(server_script)],
            stdout=subprocess.PIPE,
        )
        remote_port = int(remote.stdout.readline())
        local = services.free_port()
        tunnel = subprocess.Popen([*ssh, "-N", "-L", f"{local}:127.0.0.1:{remote_port}", target])
        services.wait_until(lambda: _connects(local), timeout=15, what="the tunnel")
        data = payload.read_bytes()
        for _ in range(rounds):
            rows.setdefault("upload: ssh -L", []).append(timed(lambda: _tunnel_up(local, data)))
            rows.setdefault("download: ssh -L", []).append(timed(lambda: _tunnel_down(local, size)))
        tunnel.terminate()
        remote.terminate()

        latencies = _round_trips([*ssh, "-tt", target, "stty raw -echo; cat"], 200)
        direct = _round_trips(["docker", "exec", "-it", "-u", "dev", container, "sh", "-c",
                               "stty raw -echo; cat"], 200)  # fmt: skip
    finally:
        server.stop()
        api_cleanup(root)

    print(f"\nSSH gateway, {megabytes} MB per transfer, median of {rounds} rounds")
    print("(ssh: OpenSSH's own cipher choice; config-ssh: as `berth config-ssh` sets it up)\n")
    print(f"{'path':<28}{'seconds':>9}{'MB/s':>9}{'vs docker exec':>16}  target")
    for direction in ("upload", "download"):
        base = statistics.median(rows[f"{direction}: docker exec -i"])
        for name in (
            f"{direction}: docker exec -i",
            f"{direction}: ssh (gateway)",
            f"{direction}: ssh, config-ssh",
            f"{direction}: ssh -L",
        ):
            seconds = statistics.median(rows[name])
            ratio, rate = base / seconds, megabytes / seconds
            verdict = ""
            if "docker exec" not in name:
                met = ratio >= TARGET_RATIO and rate >= TARGET_MB_S
                verdict = f"{TARGET_RATIO}x, {TARGET_MB_S} MB/s: {'met' if met else 'missed'}"
            print(f"{name:<28}{seconds:>9.3f}{rate:>9.0f}{ratio:>15.2f}x  {verdict}")
    print(
        f"\ninteractive round trip (pty, 1 byte): gateway p50 {_ms(latencies, 0.5)} ms, "
        f"p95 {_ms(latencies, 0.95)} ms; docker exec -it p50 {_ms(direct, 0.5)} ms, "
        f"p95 {_ms(direct, 0.95)} ms"
    )


def api_cleanup(root: Path) -> None:
    # The workspace goes with its instance's containers; leave nothing running.
    client = docker.from_env()
    instance = (root / "data" / "instance_id").read_text().strip()
    for container in client.containers.list(
        all=True, filters={"label": f"berth.instance={instance}"}
    ):
        container.remove(force=True)


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


def _tunnel_up(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"u" + data)
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1) == b"k"


def _tunnel_down(port: int, size: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"d")
        got = 0
        while chunk := conn.recv(1 << 20):
            got += len(chunk)
        assert got == size, got


def _round_trips(argv: list[str], count: int) -> list[float]:
    """Seconds from writing one byte to a raw pty until it comes back."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)  # noqa: S606 (the child of pty.fork becomes the client)
    time.sleep(2)  # let the session open and stty apply
    while select.select([fd], [], [], 0.2)[0]:
        os.read(fd, 65536)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        os.write(fd, b"x")
        got = b""
        while b"x" not in got:
            select.select([fd], [], [], 5)
            got += os.read(fd, 1024)
        samples.append(time.perf_counter() - started)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return samples


def _ms(samples: list[float], q: float) -> str:
    ordered = sorted(samples)
    return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000:.1f}"


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
