"""Benchmark: workspace lifecycle through a real `berth serve`, against `devcontainer up` and a
bare `docker run` on the same configuration, in one run.

Measures (seconds): create -> running with a cached image; stop -> start; rebuild of an
unchanged config; 20 workspaces requested at once (total, p50, p95); and where a create's
and a start's time goes, stage by stage, from the jobs' own records. Besides the bare
`docker run -d` and `docker start` the targets are set against, the engine is also
measured with what a workspace has and a bare container has not: a bridge network of
its own (made at create; a container on a user-defined network starts slower).
Run: python bench/workspaces.py [rounds] [burst]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from bench.common import at_once, tear_down  # noqa: E402
from tests import reference, services  # noqa: E402
from tests.berthapi import Client  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent.parent / "devcontainers" / "base"
AT_REST_SECONDS = 3.0  # the worker's NETWORKS_IDLE_SECONDS, and the network made then


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(rounds: int = 3, burst: int = 20) -> None:
    client = docker.from_env(timeout=600)
    ensure_base_image(client, BASE_IMAGE)
    cli = reference.ensure_cli()
    root = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = services.start_berth_serve(root / "data")
    rows: dict[str, list[float]] = {}
    try:
        server.cli(
            "admin", "create-user", "bench", "--admin", "--password-stdin", input="bench-password\n"
        )
        api = Client(server.url, server.cli("token", "create", "bench").stdout.strip())
        warm = api.create("warm", template="base")  # builds (or finds) the template image
        api.wait(warm["id"], "running", timeout=900)

        stages: dict[str, dict[str, list[float]]] = {"create": {}, "start": {}}
        for i in range(rounds):
            # A person's creates come apart, with the appliance at rest between (what the
            # worker does then, such as making the next workspace's network, is done);
            # the burst below measures creates that come together.
            time.sleep(AT_REST_SECONDS)
            started = time.perf_counter()
            created = create_and_wait(api, f"c{i}")
            rows.setdefault("berth: create -> running (cached image)", []).append(
                time.perf_counter() - started
            )
            collect_stages(api, created["id"], "create", stages)

        ws_id = warm["id"]
        for _ in range(rounds):
            api.act(ws_id, "stop")
            api.wait(ws_id, "stopped")
            rows.setdefault("berth: stop -> start", []).append(
                timed(lambda: started_and_waited(api, ws_id))
            )
            collect_stages(api, ws_id, "start", stages)
        for _ in range(rounds):
            rows.setdefault("berth: rebuild, unchanged config", []).append(
                timed(lambda: (api.act(ws_id, "rebuild"), api.wait(ws_id, "running")))
            )
        assert "using cached image" in api.log(ws_id)

        image = api.get(ws_id)["image"]
        for _ in range(rounds):
            rows.setdefault("docker run -d (same image)", []).append(
                timed(
                    lambda: client.containers.run(
                        image, ["sleep", "infinity"], detach=True, remove=True
                    ).stop(timeout=0)
                )
            )
        rows["docker start (same image)"] = docker_starts(client, image, rounds)
        # What a workspace has and a bare container has not, for the engine alone: a
        # bridge network of its own (made at create; a container on a user-defined
        # network also starts slower than on Docker's default bridge).
        for _ in range(rounds):
            rows.setdefault("docker network create + run -d on it", []).append(
                run_on_own_network(client, image)
            )
        network = client.networks.create(f"bench-own-start-{time.time_ns()}")
        try:
            rows["docker start, on its own network"] = docker_starts(
                client, image, rounds, network.name
            )
        finally:
            network.remove()

        for i in range(rounds):
            ws = root / f"ref{i}" / "base"
            shutil.copytree(TEMPLATE, ws)
            reference.up(cli, ws, {"PATH": "/usr/bin:/bin"}, "devcontainer.json")  # warm
            for found in client.containers.list(
                all=True, filters={"label": f"devcontainer.local_folder={ws}"}
            ):
                found.remove(force=True)
            rows.setdefault("devcontainer up (cached image)", []).append(
                timed(
                    lambda ws=ws: reference.up(
                        cli, ws, {"PATH": "/usr/bin:/bin"}, "devcontainer.json"
                    )
                )
            )
            for found in client.containers.list(
                all=True, filters={"label": f"devcontainer.local_folder={ws}"}
            ):
                found.remove(force=True)

        latencies: list[float] = []
        lock = threading.Lock()

        def one(n: int) -> None:
            started = time.perf_counter()
            create_and_wait(api, f"burst{n}")
            with lock:
                latencies.append(time.perf_counter() - started)

        bare_burst = burst_of_docker_runs(image, burst)
        own_burst = burst_of_docker_runs(image, burst, own_network=True)
        total = at_once([lambda n=n: one(n) for n in range(burst)])
        running = sum(
            1
            for w in api.call("GET", "/workspaces").json()
            if w["status"] == "running" and w["name"].startswith("burst")
        )
    finally:
        tear_down(api, server, root)

    print(f"\nworkspace lifecycle, {rounds} rounds (median seconds)")
    for name, values in rows.items():
        print(f"  {name:<44}{statistics.median(values):>8.2f}")
    ours = statistics.median(rows["berth: create -> running (cached image)"])
    theirs = statistics.median(rows["devcontainer up (cached image)"])
    bare = statistics.median(rows["docker run -d (same image)"])
    own_run = statistics.median(rows["docker network create + run -d on it"])
    own_start = statistics.median(rows["docker start, on its own network"])
    print(
        f"  ratio devcontainer up / berth create: {theirs / ours:.2f}x; "
        f"berth create / docker run: {ours / bare:.1f}x\n"
        f"  against the engine with a network of its own: create {ours / own_run:.2f}x, "
        f"start {statistics.median(rows['berth: stop -> start']) / own_start:.2f}x"
    )
    print(
        f"\n{burst} workspaces requested at once: {running} running in {total:.1f} s; "
        f"p50 {pct(latencies, 0.5):.1f} s, p95 {pct(latencies, 0.95):.1f} s"
    )
    print(f"{burst} x docker run -d at once: all running in {bare_burst:.1f} s")
    print(
        f"{burst} x (network create + run -d on it) at once: all running in {own_burst:.1f} s "
        f"(berth {total / own_burst:.2f}x)"
    )

    print("\nwhere the time goes (median seconds per stage, from each job's record)")
    for kind, by_stage in stages.items():
        parts = ", ".join(f"{name} {statistics.median(v):.2f}" for name, v in by_stage.items())
        print(f"  {kind:<7}{parts}")

    start = statistics.median(rows["berth: stop -> start"])
    docker_start = statistics.median(rows["docker start (same image)"])
    targets = [
        ("cached create <= devcontainer up", ours / theirs, 1.0),
        ("cached create <= 1.5x docker run -d", ours / bare, 1.5),
        ("stop -> start <= 1.5x docker start", start / docker_start, 1.5),
        (f"{burst} creates at once <= 1.5x {burst} docker run -d", total / bare_burst, 1.5),
    ]
    print("\ntargets (ratio in this run)")
    for name, ratio, limit in targets:
        print(f"  {name:<48}{ratio:>6.2f}x  {'met' if ratio <= limit else 'missed'}")
    print("  unchanged rebuild builds nothing                  met (log: 'using cached image')")


def create_and_wait(api: Client, name: str) -> dict:
    """A create that answers once the workspace runs (the API's own wait, as clients
    use it: no polling interval of ours in the measurement)."""
    body = {"name": name, "template": "base", "wait": 900}
    created = api.call("POST", "/workspaces", 201, json=body).json()
    assert created["status"] == "running", created
    return created


def started_and_waited(api: Client, ws_id: int) -> None:
    answer = api.call("POST", f"/workspaces/{ws_id}/start?wait=600", 202).json()
    assert answer["workspace"]["status"] == "running", answer


def collect_stages(api: Client, ws_id: int, kind: str, into: dict) -> None:
    """Add the stages of the workspace's newest job of ``kind`` to ``into[kind]``, once
    it ended (a start answers as soon as the workspace runs; its job may go on a moment)."""
    deadline = time.monotonic() + 60
    while True:
        jobs = api.call("GET", f"/workspaces/{ws_id}/history").json()["transitions"]
        job = next(j for j in jobs if j["kind"] == kind)
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for stage in job["stages"]:
        into[kind].setdefault(stage["stage"], []).append(stage["seconds"])


def docker_starts(client: docker.DockerClient, image: str, rounds: int, network=None) -> list:
    """Seconds of each `docker start` of a stopped container of ``image``."""
    plain = client.containers.run(image, ["sleep", "infinity"], detach=True, network=network)
    try:
        took = []
        for _ in range(rounds):
            plain.stop(timeout=0)
            took.append(timed(plain.start))
        return took
    finally:
        plain.remove(force=True)


def run_on_own_network(client: docker.DockerClient, image: str) -> float:
    """Seconds for a bridge network and a container started on it (then stopped, as the
    `docker run -d` row does); removing them is not timed."""
    made = []

    def run() -> None:
        made.append(client.networks.create(f"bench-own-{time.time_ns()}"))
        made.append(
            client.containers.run(image, ["sleep", "infinity"], detach=True, network=made[0].name)
        )
        made[1].stop(timeout=0)

    try:
        return timed(run)
    finally:
        if len(made) > 1:
            made[1].remove(force=True)
        if made:
            made[0].remove()


def burst_of_docker_runs(image: str, burst: int, own_network: bool = False) -> float:
    """Seconds until ``burst`` containers started at once all run (the baseline); with
    ``own_network``, each on a bridge network made for it."""
    client = docker.from_env(timeout=600, max_pool_size=burst + 4)  # a connection each
    made, lock = [], threading.Lock()

    def one() -> None:
        network = client.networks.create(f"bench-own-{time.time_ns()}") if own_network else None
        container = client.containers.run(
            image, ["sleep", "infinity"], detach=True, network=network.name if network else None
        )
        with lock:
            made.append((container, network))

    took = at_once([one] * burst)
    for container, network in made:
        container.remove(force=True)
        if network is not None:
            network.remove()
    return took


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
