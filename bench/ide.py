"""Benchmark: the browser IDE through Caddy + forward_auth against code-server reached
directly on the workspace network, in one run, on a real `berth serve`.

Measures: added latency per proxied request (p50/p95 of a small request, through the
front door and direct); time to first byte of the workbench page; full workbench load
in headless Chromium (until the editor part is on screen); memory of an idle workspace
with code-server running (container total and code-server's own processes).
Target: under 5 ms added at p50.
Run: python bench/ide.py [requests] [loads]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import docker
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.runtime.docker import tools  # noqa: E402
from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from app.runtime.layout import CODE_SERVER_PORT  # noqa: E402
from tests import services  # noqa: E402
from tests.berthapi import Client  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def app_cookie(server, ide_url: str) -> str:
    """Sign in on the main origin and trade the ticket for the IDE's cookie."""
    web = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', web.get(server.url + "/login").text)
    web.post(
        server.url + "/login",
        data={"username": "bench", "password": "bench-password", "csrf_token": token.group(1)},
    )
    hop = web.get(
        server.url + "/apps/open?" + urlencode({"to": ide_url}), allow_redirects=False
    ).headers["Location"]
    parts = urlsplit(hop)
    traded = requests.get(
        f"http://127.0.0.1:{parts.port}{parts.path}?{parts.query}",
        headers={"Host": parts.netloc},
        allow_redirects=False,
        timeout=10,
    )
    return traded.cookies["berth_app"]


def timed_gets(url: str, headers: dict, count: int) -> list[float]:
    session = requests.Session()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, headers=headers, timeout=10)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code)
    return times


def ttfb(url: str, headers: dict) -> float:
    started = time.perf_counter()
    with requests.get(url, headers=headers, stream=True, timeout=30) as answer:
        next(answer.iter_content(1))
    return (time.perf_counter() - started) * 1000


def workbench_loads(url: str, cookie: dict | None, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        for _ in range(loads):
            context = browser.new_context()
            if cookie:
                context.add_cookies([cookie])
            page = context.new_page()
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(".monaco-workbench .part.editor", timeout=120_000)
            times.append((time.perf_counter() - started) * 1000)
            context.close()
        browser.close()
    return times


def main(count: int = 300, loads: int = 3) -> None:
    client = docker.from_env(timeout=900)
    ensure_base_image(client, BASE_IMAGE)
    tools.ensure(client, on_log=print)
    root = Path(tempfile.mkdtemp(prefix="berth-bench-ide-"))
    server = services.start_berth_serve(root / "data")
    try:
        server.cli(
            "admin", "create-user", "bench", "--admin", "--password-stdin", input="bench-password\n"
        )
        api = Client(server.url, server.cli("token", "create", "bench").stdout.strip())
        ws = api.wait(api.create("bench", template="base")["id"], "running", timeout=900)
        ide_url = ws["urls"]["ide"]
        host = urlsplit(ide_url).netloc
        cookie = app_cookie(server, ide_url)
        instance = (root / "data" / "instance_id").read_text().strip()
        container = client.containers.get(f"berth-{instance}-ws-{ws['id']}")
        address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        front = f"http://127.0.0.1:{server.apps_port}"
        direct = f"http://{address}:{CODE_SERVER_PORT}"
        through = {"Host": host, "Cookie": f"berth_app={cookie}"}

        small = "/healthz"
        timed_gets(front + small, through, 20)  # warm both paths
        timed_gets(direct + small, {}, 20)
        via_caddy = timed_gets(front + small, through, count)
        straight = timed_gets(direct + small, {}, count)
        first_caddy = statistics.median(ttfb(front + "/", through) for _ in range(10))
        first_direct = statistics.median(ttfb(direct + "/", {}) for _ in range(10))
        load_caddy = workbench_loads(
            ide_url,
            {
                "name": "berth_app",
                "value": cookie,
                "domain": urlsplit(ide_url).hostname,
                "path": "/",
            },
            loads,
        )
        load_direct = workbench_loads(direct + "/", None, loads)
        time.sleep(10)  # idle: no browser connected
        stats = container.stats(stream=False)["memory_stats"]
        used = stats.get("usage", 0) - stats.get("stats", {}).get("inactive_file", 0)
        rss = (
            container.exec_run(
                ["sh", "-c", "ps -eo rss,args | grep [c]ode-server | awk '{s+=$1} END {print s}'"]
            )
            .output.decode()
            .strip()
        )

        print()
        print(f"{'measure':52} {'caddy+auth':>11} {'direct':>9} {'ratio':>7}")
        rows = [
            (f"small request p50 (ms, n={count})", pct(via_caddy, 0.5), pct(straight, 0.5)),
            (f"small request p95 (ms, n={count})", pct(via_caddy, 0.95), pct(straight, 0.95)),
            ("workbench page, time to first byte (ms, median of 10)", first_caddy, first_direct),
            (
                f"workbench load in Chromium (ms, median of {loads})",
                statistics.median(load_caddy),
                statistics.median(load_direct),
            ),
        ]
        for name, ours, base in rows:
            print(f"{name:52} {ours:11.1f} {base:9.1f} {ours / base:6.2f}x")
        added = pct(via_caddy, 0.5) - pct(straight, 0.5)
        added95 = pct(via_caddy, 0.95) - pct(straight, 0.95)
        print(f"added latency per proxied request: p50 {added:.2f} ms, p95 {added95:.2f} ms")
        print(
            f"idle workspace with code-server: container {used / 2**20:.0f} MiB, "
            f"code-server processes RSS {int(rss or 0) / 1024:.0f} MiB"
        )
        api.call("DELETE", f"/workspaces/{ws['id']}")
        api.wait(ws["id"], "deleted", timeout=120)
    finally:
        server.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
