"""Benchmark: N agent sandboxes requested at once through the API, until each is
exec-ready (create with "wait", then a first exec), without and with the warm pool, in
one run on a real `berth serve`; and the latency of single pool claims.

Baseline: the same burst without a pool (cold: build cache warm, containers new).
Target: a pool claim's p50 under 300 ms.
Run: python bench/sandboxes.py [burst] [claims]     (defaults 50 and 20)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from tests import services  # noqa: E402
from tests.berthapi import Client  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ready_one(api: Client, name: str) -> float:
    """Seconds from the request until the sandbox ran its first command."""
    started = time.monotonic()
    ws = api.call(
        "POST",
        "/workspaces",
        201,
        json={"name": name, "template": "agent-sandbox", "wait": 900, "ttl": "30m"},
    ).json()
    assert ws["status"] == "running", ws
    assert api.exec(ws["id"], ["true"])["exit_code"] == 0
    return time.monotonic() - started


def burst(api: Client, prefix: str, count: int) -> tuple[float, list[float]]:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as threads:
        times = list(threads.map(lambda i: ready_one(api, f"{prefix}-{i}"), range(count)))
    return time.monotonic() - started, times


def delete_all(api: Client) -> None:
    rows = api.call("GET", "/workspaces", 200).json()
    for ws in rows:
        api.call("DELETE", f"/workspaces/{ws['id']}")
    for ws in rows:
        api.wait(ws["id"], "deleted", timeout=600)


def set_pool(api: Client, size: int) -> dict:
    template = next(
        t for t in api.call("GET", "/templates", 200).json() if t["name"] == "agent-sandbox"
    )
    limits = {**template["limits"], "pool_size": size}
    api.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": limits})
    return template["limits"]


def pooled(api: Client) -> int:
    rows = api.call("GET", "/workspaces", 200).json()
    return sum(1 for w in rows if w["owner"] == "berth-pool" and w["status"] == "pooled")


def main(count: int = 50, claims: int = 20) -> None:
    docker_client = services.ensure_docker()
    ensure_base_image(docker_client, BASE_IMAGE, on_log=lambda line: None)
    root = Path(tempfile.mkdtemp(prefix="berth-bench-sandboxes-"))
    server = services.start_berth_serve(root / "data")
    try:
        server.cli(
            "admin", "create-user", "bench", "--admin", "--password-stdin", input="bench-password\n"
        )
        api = Client(server.url, server.cli("token", "create", "bench").stdout.strip())
        ready_one(api, "warm-up")  # builds the image once: both runs start from the cache
        delete_all(api)

        cold_total, cold = burst(api, "cold", count)
        delete_all(api)

        original = set_pool(api, count)
        filled = time.monotonic()
        while pooled(api) < count:
            time.sleep(1)
        fill_seconds = time.monotonic() - filled
        warm_total, warm = burst(api, "warm", count)
        delete_all(api)

        set_pool(api, 2)
        single = []
        for i in range(claims):
            while pooled(api) < 1:
                time.sleep(0.2)
            started = time.monotonic()
            api.call(
                "POST",
                "/workspaces",
                201,
                json={
                    "name": f"claim-{i}",
                    "template": "agent-sandbox",
                    "wait": True,
                    "ttl": "30m",
                },
            )
            single.append(time.monotonic() - started)
        set_pool(api, 0)
        api.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": original})
        delete_all(api)
    finally:
        server.stop()

    print(f"\n{count} agent sandboxes requested at once, each until its first exec ran")
    print(f"| measure | no pool (baseline) | warm pool of {count} | ratio |")
    print("|---|---|---|---|")
    for label, fn in (
        ("all exec-ready (s)", None),
        ("p50 per sandbox (s)", 0.5),
        ("p95 per sandbox (s)", 0.95),
    ):
        a = cold_total if fn is None else pct(cold, fn)
        b = warm_total if fn is None else pct(warm, fn)
        print(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.3f}x |")
    print(f"\nfilling the pool of {count}: {fill_seconds:.1f} s (in the background)")
    p50, p95, mean = (
        x * 1000 for x in (pct(single, 0.5), pct(single, 0.95), statistics.mean(single))
    )
    print(
        f"single pool claims (create with wait, n={claims}): p50 {p50:.0f} ms, "
        f"p95 {p95:.0f} ms, mean {mean:.0f} ms (target p50 < 300 ms)"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
