"""Benchmark: how many idle workspaces one host holds, and what the control plane costs.

Starts N workspaces of the base template (default 30) on one `berth serve`, lets them
settle, and prints: the control plane's total RSS (berth serve and every process under
it, Caddy included); memory per idle workspace (its cgroup's usage less page cache, with
code-server running in it, as Berth starts it); the same for a few workspaces after one
IDE session in headless Chromium, closed and left idle; and how many idle workspaces
16 GiB holds at that rate. The baseline, measured in the same run, is a bare container
of the same image running `sleep`.
Run: python bench/density.py [workspaces] [ide sessions] [idle seconds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from app.runtime.docker.names import LABEL_ROLE, LABEL_WORKSPACE  # noqa: E402
from bench.common import at_once, tear_down  # noqa: E402
from tests import services  # noqa: E402
from tests.berthapi import Client  # noqa: E402

MiB = 1024 * 1024
TARGETS = {  # MiB
    "idle workspace": 64,
    "idle workspace after an IDE session": 128,
    "control plane RSS": 400,
}


def container_memory(container) -> float:
    """MiB the container's cgroup uses, page cache left out (cgroup v1 and v2)."""
    stats = container.stats(stream=False)["memory_stats"]
    detail = stats.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    return (stats.get("usage", 0) - cache) / MiB


def tree_rss(pid: int) -> dict[str, float]:
    """MiB of resident memory of a process and everything under it, by what each
    process is (berth's own by their sub-command, gunicorn's workers together)."""
    root = psutil.Process(pid)
    by_name: dict[str, float] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            argv = process.cmdline()
            rss = process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        words = [w for w in argv if not w.startswith("-")]
        name = Path(argv[0]).name if argv else process.name()
        if "app" in words and words.index("app") + 1 < len(words):
            name = "berth " + words[words.index("app") + 1]
        elif "gunicorn" in " ".join(argv[:2]):
            name = "gunicorn (web)"
        by_name[name] = by_name.get(name, 0) + rss / MiB
    return by_name


def workspace_container(client, ws_id: int):
    found = client.containers.list(filters={"label": f"{LABEL_WORKSPACE}={ws_id}"})
    return next(c for c in found if c.labels.get(LABEL_ROLE) == "workspace")


def open_ide_once(server, ws: dict, idle_seconds: float) -> None:
    """Sign in, open the workspace's IDE until its workbench shows, close the tab."""
    from playwright.sync_api import sync_playwright

    from tests.test_ide import login, open_url, wait_for_workbench

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        login(page, server, "bench")
        page.goto(open_url(server, ws["urls"]["ide"]))
        wait_for_workbench(page, timeout=180_000)
        page.wait_for_timeout(3_000)  # the workbench's first requests settle
        browser.close()
    time.sleep(idle_seconds)


def main(count: int = 30, sessions: int = 3, idle_seconds: float = 60) -> None:
    client = docker.from_env(timeout=600)
    ensure_base_image(client, BASE_IMAGE)
    root = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = services.start_berth_serve(root / "data")
    rows: dict[str, float] = {}
    try:
        server.cli(
            "admin",
            "create-user",
            "bench",
            "--admin",
            "--password-stdin",
            input="bench-password\n",
        )
        api = Client(server.url, server.cli("token", "create", "bench").stdout.strip())
        warm = api.wait(api.create("warm", template="base")["id"], "running", timeout=900)
        image = api.get(warm["id"])["image"]

        bare = client.containers.run(image, ["sleep", "infinity"], detach=True)
        try:
            time.sleep(5)
            rows["bare container (sleep), baseline"] = container_memory(bare)
        finally:
            bare.remove(force=True)

        made: list[dict] = []
        lock = threading.Lock()

        def one(n: int) -> None:
            ws = api.wait(api.create(f"d{n}", template="base")["id"], "running", timeout=900)
            with lock:
                made.append(ws)

        # Ten at a time: a burst is bench/workspaces.py's measure.
        took = sum(
            at_once([lambda n=n: one(n) for n in range(batch, min(count, batch + 10))])
            for batch in range(0, count, 10)
        )
        if len(made) != count:
            raise SystemExit(f"only {len(made)} of {count} workspaces came up")

        time.sleep(idle_seconds)  # code-server and the shells settle
        idle = [container_memory(workspace_container(client, ws["id"])) for ws in made]
        rows["idle workspace"] = statistics.median(idle)
        plane = tree_rss(server.process.pid)
        rows["control plane RSS"] = sum(plane.values())

        after = []
        for ws in made[:sessions]:
            open_ide_once(server, api.get(ws["id"]), idle_seconds)
            after.append(container_memory(workspace_container(client, ws["id"])))
        if after:
            rows["idle workspace after an IDE session"] = statistics.median(after)
    finally:
        tear_down(api, server, root)

    baseline = rows["bare container (sleep), baseline"]
    print(f"\ndensity: {count} workspaces of the base template up in {took:.1f} s")
    print(f"{'measure (MiB)':<42}{'value':>9}{'x baseline':>12}{'target':>9}  verdict")
    for name, value in rows.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if value <= target else "missed")
        ratio = f"{value / baseline:>11.1f}x" if baseline > 0 else f"{'':>12}"
        shown = f"{target:>9}" if target else f"{'':>9}"
        print(f"{name:<42}{value:>9.1f}{ratio}{shown}  {verdict}")
    print(
        "control plane by process (MiB): "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(plane.items(), key=lambda i: -i[1]))
    )
    per = rows.get("idle workspace after an IDE session", rows["idle workspace"])
    print(f"\n16 GiB holds about {int(16 * 1024 / per)} idle workspaces at {per:.0f} MiB each")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        int(args[0]) if args else 30,
        int(args[1]) if len(args) > 1 else 3,
        float(args[2]) if len(args) > 2 else 60,
    )
