"""Benchmark: one `berth serve` under people and agents at once, for a set time.

K people each keep long-lived requests open (execs that sleep, followed logs, SSH
sessions through Berth's gateway) while probes measure what must stay fast: /healthz and
the IDE's forward_auth (an authorized request through Caddy); a short exec and an SSH
login with a command are timed alongside. Then N create/delete cycles (each create timed
to running, each delete to gone), after which nothing may be left behind: no container,
network, volume, subnet or live row.

Baseline: the same probes on the same server before the load (same run).
Targets (met/missed): 200 concurrent long-lived requests with /healthz and forward_auth
under 50 ms at p95; no errors; every lifecycle sweep succeeds; the cycles leave nothing.
Run: python bench/load.py [--people 8] [--long 200] [--seconds 60] [--cycles 100]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from tests import services  # noqa: E402
from tests.berthapi import Client  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Probe:
    """Times one kind of short request again and again until stopped."""

    def __init__(self, name: str, call):
        self.name, self.call = name, call
        self.times: list[float] = []
        self.errors = 0

    def once(self) -> None:
        started = time.perf_counter()
        try:
            ok = self.call()
        except requests.RequestException:
            ok = False
        if ok:
            self.times.append((time.perf_counter() - started) * 1000)
        else:
            self.errors += 1

    def run(self, stop: threading.Event, every: float = 0.1) -> None:
        while not stop.is_set():
            self.once()
            stop.wait(every)


def ide_session(server, who: str, ide_url: str) -> tuple[requests.Session, str]:
    """A browser-like session that has opened ``ide_url`` (its apps cookie set), and the
    address to send its requests to: the apps port on loopback, with the workspace's
    host name in the Host header (*.localhost names do not resolve here)."""
    session = services.web_session(server.url, who)
    opened = session.get(server.url + "/apps/open", params={"to": ide_url}, allow_redirects=False)
    assert opened.status_code in (302, 303), opened.status_code
    target = urlsplit(opened.headers["Location"])
    local = f"http://127.0.0.1:{target.port}"
    session.headers["Host"] = target.netloc
    landed = session.get(f"{local}{target.path}?{target.query}", allow_redirects=False)
    assert landed.status_code < 500, landed.status_code
    return session, local + "/"


def ssh_argv(key: Path, port: int, login: str, command: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-i", str(key),
        "-p", str(port), f"{login}@127.0.0.1", command,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--long", type=int, default=200, help="long-lived requests at once")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()

    docker_client = services.ensure_docker()
    ensure_base_image(docker_client, BASE_IMAGE, on_log=lambda line: None)
    root = Path(tempfile.mkdtemp(prefix="berth-bench-load-"))
    server = services.start_berth_serve(root / "data", {"BERTH_LIFECYCLE_INTERVAL": "5"})
    instance = (root / "data" / "instance_id").read_text().strip()
    try:
        names = [f"p{n}" for n in range(args.people)]
        clients, keys = {}, {}
        for name in names:
            server.cli("admin", "create-user", name, "--password-stdin", input=f"{name}-password\n")
            clients[name] = Client(server.url, server.cli("token", "create", name).stdout.strip())
            keys[name] = root / f"id_{name}"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[name])], check=True
            )
            clients[name].call(
                "POST",
                "/users/me/keys",
                201,
                json={"public_key": keys[name].with_suffix(".pub").read_text()},
            )
        spaces = {}
        for name, api in clients.items():
            spaces[name] = api.create("work", template="base")["id"]
        for name, api in clients.items():
            ws = api.wait(spaces[name], "running", timeout=900)
            assert ws["status"] == "running", api.log(spaces[name])
        first = names[0]
        ide, ide_url = ide_session(server, first, clients[first].get(spaces[first])["urls"]["ide"])

        probes = [
            Probe("healthz", lambda: requests.get(server.url + "/healthz", timeout=10).ok),
            Probe(
                "forward_auth (IDE request)",
                lambda: (
                    ide.get(ide_url + "healthz", timeout=10, allow_redirects=False).status_code
                    < 500
                ),
            ),
        ]
        # Timed alongside, without a target: what a person waits for at a terminal.
        side_probes = [
            Probe(
                "exec (true)",
                lambda: clients[first].exec(spaces[first], ["true"], timeout=30)["exit_code"] == 0,
            ),
            Probe(
                "ssh login + command",
                lambda: (
                    subprocess.run(
                        ssh_argv(keys[first], server.ssh_port, "work", "true"),
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=30,
                    ).returncode
                    == 0
                ),
            ),
        ]
        # Baseline: the probes on the idle server.
        for _ in range(40):
            for probe in probes:
                probe.once()
        for _ in range(10):
            for probe in side_probes:
                probe.once()
        baseline = {p.name: list(p.times) for p in probes + side_probes}
        for probe in probes + side_probes:
            probe.times, probe.errors = [], 0

        long_errors, long_done = [], []
        per_person = max(1, args.long // len(names))
        hold = max(5.0, args.seconds - 5)

        ssh_sessions = 0

        def long_request(name: str, n: int) -> None:
            nonlocal ssh_sessions
            api = clients[name]
            try:
                if n % 4 == 2:  # an SSH session through the gateway, for the whole hold
                    # People do not all sign in in the same instant; the gateway lets 8 per
                    # address wait to sign in at once and drops the rest (its bound).
                    ssh_sessions += 1
                    time.sleep(0.15 * (names.index(name) + len(names) * (n // 4)))
                    result = subprocess.run(
                        ssh_argv(keys[name], server.ssh_port, "work", f"sleep {int(hold) - 10}"),
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=hold + 30,
                    )
                    if result.returncode != 0:
                        raise RuntimeError(f"ssh exited {result.returncode}: {result.stderr!r}")
                elif n % 4 == 3:  # a followed log, read until the hold is over
                    with api.session.get(
                        f"{api.base}/workspaces/{spaces[name]}/logs", stream=True, timeout=hold + 30
                    ) as answer:
                        answer.raise_for_status()
                        deadline = time.monotonic() + hold
                        for _ in answer.iter_lines():
                            if time.monotonic() > deadline:
                                break
                else:
                    result = api.exec(spaces[name], ["sleep", str(int(hold))], timeout=hold + 30)
                    if result["exit_code"] != 0:
                        raise RuntimeError(result)
                long_done.append(name)
            except Exception as exc:  # noqa: BLE001  (counted and shown, whatever it is)
                long_errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")

        stop = threading.Event()
        threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in probes]
        threads += [
            threading.Thread(target=p.run, args=(stop, 0.5), daemon=True) for p in side_probes
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.long + 8) as pool:
            futures = [
                pool.submit(long_request, name, n) for name in names for n in range(per_person)
            ]
            time.sleep(3)  # let the long requests open before measuring under them
            for thread in threads:
                thread.start()
            for future in futures:
                future.result()
        stop.set()
        for thread in threads:
            thread.join()
        loaded_for = time.monotonic() - started

        # Every lifecycle sweep during the run succeeded?
        db = sqlite3.connect(root / "data" / "berth.db")
        runs, failures = db.execute(
            "SELECT runs, failures FROM scheduled_jobs WHERE name = 'lifecycle'"
        ).fetchone()
        db.close()

        for name, api in clients.items():
            api.delete(spaces[name])
        for name, api in clients.items():
            api.wait(spaces[name], "deleted", timeout=300)

        # Create/delete cycles, then look for anything left.
        cycle_api = clients[first]
        cycle_started = time.monotonic()
        cycle_errors = 0
        creates, deletes = [], []
        for n in range(args.cycles):
            try:
                began = time.perf_counter()
                ws = cycle_api.create(f"cycle-{n}", template="base")
                if (
                    cycle_api.wait(ws["id"], "running", "failed", timeout=300)["status"]
                    != "running"
                ):
                    cycle_errors += 1
                creates.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                cycle_api.delete(ws["id"])
                cycle_api.wait(ws["id"], "deleted", timeout=300)
                deletes.append((time.perf_counter() - began) * 1000)
            except Exception:  # noqa: BLE001
                cycle_errors += 1
        cycle_seconds = time.monotonic() - cycle_started
        label = {"label": f"berth.instance={instance}"}
        left = {
            "containers": [c.name for c in docker_client.containers.list(all=True, filters=label)],
            "volumes": [v.name for v in docker_client.volumes.list(filters=label)],
            "networks": [
                n.name
                for n in docker_client.networks.list(filters=label)
                if n.attrs["Labels"].get("berth.role") not in ("egress", "build")
            ],
        }
        db = sqlite3.connect(root / "data" / "berth.db")
        live_rows = db.execute(
            "SELECT COUNT(*) FROM workspaces WHERE status != 'deleted'"
        ).fetchone()[0]
        db.close()

        print()
        print(
            f"{args.people} people, {per_person * len(names)} long-lived requests at once "
            f"(execs that sleep {hold:.0f} s, followed logs, {ssh_sessions} SSH sessions), "
            f"{loaded_for:.0f} s under load"
        )
        print(f"{'operation':<30} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'errors':>7} "
              f"{'idle p95':>9} {'ratio':>6}  target")  # fmt: skip
        verdicts = []
        for probe in probes:
            p95 = pct(probe.times, 0.95)
            idle = pct(baseline[probe.name], 0.95)
            met = p95 < 50 and probe.errors == 0
            verdicts.append(met)
            p50 = statistics.median(probe.times or [0])
            print(
                f"{probe.name:<30} {len(probe.times):>6} {p50:>9.1f} "
                f"{p95:>9.1f} {probe.errors:>7} {idle:>9.1f} {p95 / idle if idle else 0:>6.2f}  "
                f"p95 < 50 ms: {'met' if met else 'MISSED'}"
            )
        for probe in side_probes:
            p95, idle = pct(probe.times, 0.95), pct(baseline[probe.name], 0.95)
            p50 = statistics.median(probe.times or [0])
            print(
                f"{probe.name:<30} {len(probe.times):>6} {p50:>9.1f} "
                f"{p95:>9.1f} {probe.errors:>7} {idle:>9.1f} {p95 / idle if idle else 0:>6.2f}  "
                f"(no target){'' if probe.errors == 0 else ', errors: MISSED'}"
            )
            verdicts.append(probe.errors == 0)
        for label, times in (("create (to running)", creates), ("delete (to gone)", deletes)):
            print(
                f"{label:<30} {len(times):>6} {statistics.median(times or [0]):>9.0f} "
                f"{pct(times, 0.95):>9.0f} {'':>7} {'':>9} {'':>6}  (no target)"
            )
        long_met = not long_errors and len(long_done) == per_person * len(names)
        verdicts.append(long_met)
        print(
            f"{'long-lived requests':<30} {len(long_done):>6} {'':>9} {'':>9} "
            f"{len(long_errors):>7} {'':>9} {'':>6}  all complete, no errors: "
            f"{'met' if long_met else 'MISSED'}"
        )
        for line in long_errors[:5]:
            print(f"    {line}")
        sweeps_met = runs > 0 and failures == 0
        verdicts.append(sweeps_met)
        print(
            f"{'lifecycle sweeps':<30} {runs:>6} {'':>9} {'':>9} {failures:>7} {'':>9} {'':>6}"
            f"  every sweep succeeds: {'met' if sweeps_met else 'MISSED'}"
        )
        clean = not any(left.values()) and live_rows == 0 and cycle_errors == 0
        verdicts.append(clean)
        print(
            f"{'create/delete cycles':<30} {args.cycles:>6} "
            f"{cycle_seconds / max(args.cycles, 1) * 1000:>9.0f} {'':>9} {cycle_errors:>7} "
            f"{'':>9} {'':>6}  nothing left behind: {'met' if clean else 'MISSED'}"
        )
        if not clean:
            print(f"    left: {left}, live rows: {live_rows}")
        print(f"\n{sum(verdicts)} of {len(verdicts)} targets met")
    finally:
        server.stop()
        services.remove_engine_objects([root / "data"])


if __name__ == "__main__":
    main()
