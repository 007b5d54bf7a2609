"""Benchmark: how many idle workspaces one host holds, and what the control plane costs.

Starts N workspaces of the base template (default 30) on one `berth serve`, lets them
settle, and prints: the control plane's total RSS (berth serve and every process under
it, Caddy included); memory per idle workspace (its cgroup's usage less page cache; the
IDE starts on its first open); the same for a few workspaces during one IDE session in
headless Chromium and after it closed and the IDE stopped for idleness (the template's
ide_idle_timeout set to a minute here); and how many idle workspaces 16 GiB holds at
that rate. The baseline, measured in the same run, is a bare container
of the same image running `sleep`.
Run: python bench/density.py [workspaces] [ide sessions] [settle seconds]
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
IDE_IDLE_TIMEOUT = "1m"
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
        if "app.processes.supervisor" in words:
            name = "berth serve (supervisor)"
        elif "app.processes.web" in words:
            name = "berth web"
        elif "app" in words and words.index("app") + 1 < len(words):
            name = "berth " + words[words.index("app") + 1]
        elif "gunicorn" in " ".join(argv[:2]):
            name = "gunicorn (web)"
        by_name[name] = by_name.get(name, 0) + rss / MiB
    return by_name


def workspace_container(client, ws_id: int):
    found = client.containers.list(filters={"label": f"{LABEL_WORKSPACE}={ws_id}"})
    return next(c for c in found if c.labels.get(LABEL_ROLE) == "workspace")


def open_ide_once(server, ws: dict, client) -> float:
    """Sign in, open the workspace's IDE until its workbench shows, close the tab; the
    workspace's memory while it was open."""
    from playwright.sync_api import sync_playwright

    from tests.test_ide import login, open_url, wait_for_workbench

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        login(page, server, "bench")
        page.goto(open_url(server, ws["urls"]["ide"]))
        wait_for_workbench(page, timeout=180_000)
        page.wait_for_timeout(3_000)  # the workbench's first requests settle
        during = container_memory(workspace_container(client, ws["id"]))
        browser.close()
    return during


def ides_stopped(api, spaces: list[dict], timeout: float) -> float:
    """Seconds until the IDE of every workspace in ``spaces`` has stopped for idleness."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(api.get(ws["id"])["ide"]["state"] == "stopped" for ws in spaces):
            return time.monotonic() - started
        time.sleep(2)
    raise SystemExit(f"the IDEs did not stop within {timeout:.0f} s of their tabs closing")


def main(count: int = 30, sessions: int = 3, settle_seconds: float = 60) -> None:
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

        time.sleep(settle_seconds)  # the shells and hooks settle
        idle = [container_memory(workspace_container(client, ws["id"])) for ws in made]
        rows["idle workspace"] = statistics.median(idle)
        plane = tree_rss(server.process.pid)
        rows["control plane RSS"] = sum(plane.values())

        # The IDE stops a minute after code-server last saw a connection (15 minutes
        # unless the template says otherwise).
        listed = api.call("GET", "/templates", 200).json()
        limits = next(t for t in listed if t["name"] == "base")["limits"]
        changed = {**limits, "ide_idle_timeout": IDE_IDLE_TIMEOUT}
        api.call("PATCH", "/templates/base", 200, json={"limits": changed})
        opened = made[:sessions]
        during = [open_ide_once(server, api.get(ws["id"]), client) for ws in opened]
        if opened:
            rows["workspace with its IDE open"] = statistics.median(during)
            stopped_after = ides_stopped(api, opened, 900)
            after = [container_memory(workspace_container(client, ws["id"])) for ws in opened]
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
    if sessions:
        print(
            f"the IDEs stopped {stopped_after:.0f} s after their last tab closed "
            f"(ide_idle_timeout {IDE_IDLE_TIMEOUT}, plus code-server's minute and the sweep)"
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
