"""The browser IDE and workspace ports through real Caddy and forward_auth, in real
headless Chromium: code-server's workbench renders and its terminal runs commands in the
workspace; other members get 403, anonymous visitors the login page; a server on a port
(listening on the container's loopback) serves its page; a forged upstream header
changes nothing; a stopped workspace comes up from its IDE URL; an open IDE keeps the
workspace from idling out."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app.runtime.layout import TOOLS_CURRENT
from app.workspaces import ide as ide_module
from tests.conftest import start_stack, stop_stack
from tests.services import wait_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PORT_SERVER = (
    f"nohup {TOOLS_CURRENT}/node/bin/node -e \"require('http').createServer((q, s) => "
    "s.end('hello from port 8000 at ' + q.url)).listen(8000, '127.0.0.1')\" "
    "> /tmp/port.log 2>&1 &"
)
CONFIG = {
    "image": "berth-base:bookworm",
    "forwardPorts": [8000],
    # The IDE's terminals get remoteEnv, as VS Code gives it.
    "remoteEnv": {"FROM_REMOTE_ENV": "in-the-ide"},
    "customizations": {
        "vscode": {
            "settings": {"editor.fontSize": 17},
            "extensions": ["ms-python.python"],
        }
    },
}


@pytest.fixture(scope="module")
def ide(tmp_path_factory, docker_client, base_image, tools_bundle):
    root = tmp_path_factory.mktemp("ide")
    server = start_stack(root, {"BERTH_LIFECYCLE_INTERVAL": "2", "BERTH_ACTIVITY_INTERVAL": "1"})
    repo = server.repos / "webapp"
    (repo / ".devcontainer").mkdir(parents=True)
    (repo / ".devcontainer" / "devcontainer.json").write_text(json.dumps(CONFIG))
    import subprocess

    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(argv, cwd=repo, check=True)
    ann = server.clients["ann"]
    ws = ann.create("code", repo={"url": str(repo)})
    server.ws = ann.wait(ws["id"], "running", timeout=600)
    yield server
    stop_stack(server)


def login(page, server, who: str) -> None:
    page.goto(server.url + "/login")
    page.fill("input[name=username]", who)
    page.fill("input[name=password]", f"{who}-password")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")


def open_url(server, address: str) -> str:
    """The dashboard's hand-over link for an apps-origin address."""
    return server.url + "/apps/open?" + requests.compat.urlencode({"to": address})


def wait_for_workbench(page, timeout: float = 90_000) -> None:
    page.wait_for_selector(".monaco-workbench", timeout=timeout)
    page.wait_for_selector(".monaco-workbench .part.editor", timeout=timeout)


def run_in_terminal(page, command: str, done) -> None:
    """Open a new integrated terminal through the command palette and type ``command``
    until ``done()`` (the shell may still be starting when the terminal appears; xterm
    draws on a canvas, so its text cannot be read from the DOM)."""
    terminal = None
    for _ in range(5):  # the palette may open before the workbench has its commands
        page.keyboard.press("Escape")
        page.keyboard.press("F1")
        page.wait_for_selector(".quick-input-widget input", timeout=30_000)
        page.keyboard.type(">Terminal: Create New Terminal")
        try:
            page.wait_for_selector(
                ".quick-input-list .monaco-list-row:has-text('Create New Terminal')",
                timeout=10_000,
            )
            page.keyboard.press("Enter")
            # The new one: terminals an earlier window left are restored beside it.
            terminal = page.locator(".terminal-wrapper .xterm:visible").last
            terminal.wait_for(timeout=15_000)
            break
        except PlaywrightTimeout:
            continue
    assert terminal is not None, "no terminal opened from the command palette"
    for _ in range(6):
        page.wait_for_timeout(2000)
        # Focus its input (a hover overlay may lie over the canvas where a click lands).
        terminal.locator(".xterm-helper-textarea").focus()
        page.keyboard.type(command)
        page.keyboard.press("Enter")
        try:
            wait_until(done, 8, 0.5, "the command typed in the terminal")
            return
        except TimeoutError:
            continue
    raise AssertionError(f"{command!r} never ran in the IDE's terminal")


def test_the_api_names_the_ide_and_port_urls(ide):
    urls = ide.ws["urls"]
    assert urls["ide"] == f"http://code--ann.localhost:{ide.apps_port}/"
    assert urls["ports"] == {"8000": f"http://8000--code--ann.localhost:{ide.apps_port}/"}
    log = ide.clients["ann"].log(ide.ws["id"])
    # Settings and extensions are put in place at the start; code-server itself starts on
    # the first open of the IDE.
    assert "extension ms-python.python could not be installed" in log
    assert "code-server started" not in log
    # ... and said at the top of the page, in Berth's words, as the job's warning.
    history = ide.clients["ann"].call("GET", f"/workspaces/{ide.ws['id']}/history").json()
    jobs = history["transitions"]
    create = next(job for job in jobs if job["kind"] == "create")
    assert create["warnings"] == [
        "the VS Code extension ms-python.python could not be installed (the log says why)"
    ]


def test_the_workbench_renders_and_its_terminal_runs_in_the_workspace(ide, page):
    login(page, ide, "ann")
    page.goto(ide.url + f"/workspaces/{ide.ws['id']}")
    with page.context.expect_page() as opened:
        page.click("[data-testid=open-ide]")
    ide_page = opened.value
    ide_page.set_default_timeout(60_000)
    wait_for_workbench(ide_page)
    assert urlsplit(ide_page.url).hostname == "code--ann.localhost"
    # The workspace folder is open: the explorer shows the repository's files.
    ide_page.wait_for_selector(".explorer-folders-view", timeout=60_000)
    ARTIFACTS.mkdir(exist_ok=True)
    ide_page.screenshot(path=str(ARTIFACTS / "ide-workbench.png"))
    ann = ide.clients["ann"]
    run_in_terminal(
        ide_page,
        "env -0 > /tmp/ide-env; echo berth-$((6*7)) $FROM_REMOTE_ENV > /tmp/from-ide.txt",
        lambda: (
            ann.exec(ide.ws["id"], ["cat", "/tmp/from-ide.txt"])["stdout"]
            == "berth-42 in-the-ide\n"
        ),
    )
    ide_page.screenshot(path=str(ARTIFACTS / "ide-terminal.png"))

    # The terminal's environment is the one an API exec gets (which
    # tests/test_environment_conformance.py holds against the reference), plus what VS
    # Code sets for its own terminals.
    def env_of(text: str) -> dict:
        return dict(e.split("=", 1) for e in text.split("\0") if "=" in e)

    in_terminal = env_of(ann.exec(ide.ws["id"], ["cat", "/tmp/ide-env"])["stdout"])
    through_api = env_of(ann.exec(ide.ws["id"], ["env", "-0"])["stdout"])
    assert "BERTH_IDE_SECRET" not in in_terminal and "HASHED_PASSWORD" not in in_terminal

    def path_of(env: dict) -> list[str]:
        # VS Code puts its CLI first; a login shell's profile may repeat entries.
        entries = [p for p in env.get("PATH", "").split(":") if not p.startswith("/opt/berth/")]
        return list(dict.fromkeys(entries))

    assert path_of(in_terminal) == path_of(through_api)
    vscode_own = {"TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM", "LANG",
                  "NODE_EXEC_PATH", "BROWSER", "GIT_ASKPASS", "SHLVL", "PWD", "OLDPWD", "_",
                  "PATH"}  # fmt: skip

    def comparable(env: dict) -> dict:
        return {k: v for k, v in env.items() if k not in vscode_own and not k.startswith("VSCODE_")}

    assert comparable(in_terminal) == comparable(through_api)
    assert in_terminal["FROM_REMOTE_ENV"] == "in-the-ide"
    settings = ann.sh(ide.ws["id"], "cat ~/.local/share/code-server/Machine/settings.json")
    assert json.loads(settings) == {"editor.fontSize": 17}


def test_other_members_get_404_and_anonymous_visitors_sign_in_first(ide, browser):
    address = ide.ws["urls"]["ide"]
    bob = browser.new_context().new_page()
    login(bob, ide, "bob")
    answer = bob.goto(address)
    assert answer.status == 404  # as ann's workspace page answers him: nothing said
    assert "There is no workspace code of ann" in bob.content()
    bob.context.close()
    visitor = browser.new_context().new_page()
    visitor.goto(address)
    assert urlsplit(visitor.url).path == "/login"  # on the main origin
    visitor.fill("input[name=username]", "ann")
    visitor.fill("input[name=password]", "ann-password")
    visitor.click("button[type=submit]")
    wait_for_workbench(visitor)  # and back to the IDE
    assert urlsplit(visitor.url).hostname == "code--ann.localhost"
    names = {c["name"] for c in visitor.context.cookies(address)}
    assert names == {"berth_app"}  # the control plane's session stays on its origin
    visitor.context.close()


def test_a_server_on_a_port_serves_its_page_and_can_be_shared(ide, browser):
    ann = ide.clients["ann"]
    ann.sh(ide.ws["id"], PORT_SERVER)
    address = ide.ws["urls"]["ports"]["8000"]
    page = browser.new_context().new_page()
    login(page, ide, "ann")
    page.goto(open_url(ide, address + "hello?x=1"))
    # Ports go through code-server: when no test before opened the IDE, the port's
    # first open starts it, and the page says so and reloads itself until it is up.
    page.get_by_text("hello from port 8000 at /hello?x=1").wait_for(timeout=120_000)
    assert page.inner_text("body") == "hello from port 8000 at /hello?x=1"
    page.context.close()
    bob = browser.new_context().new_page()
    login(bob, ide, "bob")
    # Not shared with him: the same answer as for a port or workspace that is not there.
    assert bob.goto(open_url(ide, address)).status == 404
    shared = ann.call("PUT", f"/workspaces/{ide.ws['id']}/ports/8000", 200, json={"shared": True})
    assert shared.json()["shared"] is True
    bob.goto(open_url(ide, address))
    assert bob.inner_text("body") == "hello from port 8000 at /"
    bob.context.close()
    ann.call("PUT", f"/workspaces/{ide.ws['id']}/ports/8000", 200, json={"shared": False})
    # A port nobody opened is not served.
    refused = ann.call("PUT", f"/workspaces/{ide.ws['id']}/ports/13337", 422).json()
    assert "the IDE's own port" in refused["error"]["message"]


class _Decoy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"FORGED UPSTREAM")

    def log_message(self, *args):
        pass


def test_a_forged_upstream_header_changes_nothing(ide, browser):
    decoy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Decoy)
    threading.Thread(target=decoy.serve_forever, daemon=True).start()
    forged = {
        "X-Berth-Upstream": f"127.0.0.1:{decoy.server_port}",
        "X-Berth-Uri": "/anything",
        "Host": f"code--ann.localhost:{ide.apps_port}",
    }
    base = f"http://127.0.0.1:{ide.apps_port}/"
    try:
        fetch = requests.get(base, headers=forged, allow_redirects=False, timeout=10)
        assert fetch.status_code == 401 and b"FORGED" not in fetch.content
        navigate = {**forged, "Sec-Fetch-Mode": "navigate"}
        anonymous = requests.get(base, headers=navigate, allow_redirects=False, timeout=10)
        assert anonymous.status_code == 302 and "/apps/open" in anonymous.headers["Location"]
        assert b"FORGED" not in anonymous.content
        page = browser.new_context().new_page()
        login(page, ide, "ann")
        page.goto(open_url(ide, ide.ws["urls"]["ide"]))
        wait_for_workbench(page)
        jar = {c["name"]: c["value"] for c in page.context.cookies(ide.ws["urls"]["ide"])}
        page.context.close()
        signed_in = requests.get(base, headers=forged, cookies=jar, timeout=10)
        assert signed_in.status_code == 200
        assert b"FORGED" not in signed_in.content
        assert b"code-server" in signed_in.content or b"vscode" in signed_in.content
    finally:
        decoy.shutdown()


def container_memory(docker_client, name: str) -> float:
    """MiB the container's cgroup uses, page cache left out (as bench/density.py)."""
    stats = docker_client.containers.get(name).stats(stream=False)["memory_stats"]
    detail = stats.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    return (stats.get("usage", 0) - cache) / 2**20


def ide_health(docker_client, name: str) -> dict | None:
    """code-server's own /healthz answer in that container, read from the host."""
    networks = docker_client.containers.get(name).attrs["NetworkSettings"]["Networks"]
    address = next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))
    return ide_module.healthz(address)


def navigate_once(server, page, address: str) -> requests.Response:
    """Open ``address`` as a browser tab would, signed in as ``page`` is, but stop at the
    first answer of the apps origin: no reload, no request after it."""
    jar = {c["name"]: c["value"] for c in page.context.cookies(server.url)}
    handed = requests.get(open_url(server, address), cookies=jar, allow_redirects=False, timeout=10)
    ticketed = urlsplit(handed.headers["Location"])
    direct = f"http://127.0.0.1:{ticketed.port}"
    headers = {"Host": ticketed.netloc, "Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
    traded = requests.get(
        f"{direct}{ticketed.path}?{ticketed.query}",
        headers=headers,
        allow_redirects=False,
        timeout=10,
    )
    assert traded.status_code == 302, traded.text
    return requests.get(
        direct + traded.headers["Location"], headers=headers, cookies=traded.cookies, timeout=10
    )


def bundle_processes(container) -> list[str]:
    """The pids of the processes running from the tools bundle (code-server and its
    helpers), each with its start time (a pid may be used again)."""
    listing = container.exec_run(
        [
            "sh",
            "-c",
            "for p in /proc/[0-9]*; do case $(readlink $p/exe) in /opt/berth/*) "
            "echo ${p#/proc/} $(cut -d' ' -f22 $p/stat);; esac; done",
        ],
        user="dev",
    )
    return listing.output.decode().splitlines()


@pytest.fixture
def short_ide_idle(ide):
    """The base template's IDE stops after 3 s without a connection (15 min by default)."""
    boss = ide.clients["boss"]
    listed = boss.call("GET", "/templates", 200).json()
    limits = next(t for t in listed if t["name"] == "base")["limits"]
    changed = {**limits, "ide_idle_timeout": "3s"}
    boss.call("PATCH", "/templates/base", 200, json={"limits": changed})
    yield
    boss.call("PATCH", "/templates/base", 200, json={"limits": limits})


def test_the_ide_starts_on_its_first_open_and_stops_when_nobody_has_it_open(
    ide, page, docker_client, short_ide_idle
):
    ann = ide.clients["ann"]
    ws = ann.wait(ann.create("lazy", template="base")["id"], "running", timeout=600)
    name = ide.docker_name(ws["id"])
    try:
        assert ws["ide"] == {"state": "off", "since": None, "note": None}
        assert ide_health(docker_client, name) is None  # not started with the workspace
        without = container_memory(docker_client, name)
        # The first open starts it; the page says so and waits (a page's request, as a
        # browser sends it, but nothing follows it: nobody will have the IDE open).
        login(page, ide, "ann")
        first = navigate_once(ide, page, ws["urls"]["ide"])
        assert first.status_code == 503 and "Starting the IDE of lazy" in first.text
        wait_until(lambda: ann.get(ws["id"])["ide"]["state"] == "ready", 90, what="the IDE up")
        assert ide_health(docker_client, name) is not None
        running = container_memory(docker_client, name)
        # Nobody opened it: it stops after the template's 3 s; the workspace runs on.
        wait_until(lambda: ann.get(ws["id"])["ide"]["state"] == "stopped", 60, what="a stop")
        seen = ann.get(ws["id"])
        assert seen["status"] == "running"
        assert seen["ide"]["note"] == "nobody had it open for 3s"
        wait_until(lambda: ide_health(docker_client, name) is None, 30, what="code-server gone")
        # ...and its memory with it.
        stopped = wait_until(
            lambda: (m := container_memory(docker_client, name)) < without + 16 and m, 30
        )
        print(f"memory (MiB): before {without:.0f}, IDE up {running:.0f}, stopped {stopped:.0f}")
        assert running - stopped > 32  # code-server alone, never opened: about 60 MiB
        # The next open starts it again, in a real browser this time.
        page.goto(open_url(ide, ws["urls"]["ide"]))
        wait_for_workbench(page)
        assert ann.get(ws["id"])["ide"]["state"] == "ready"
        # After a session, its extension host and the rest go with it too (the tab is
        # closed first; a request still on its way may start a new one, as it should).
        container = docker_client.containers.get(name)
        wait_until(lambda: len(bundle_processes(container)) >= 3, 60, what="the IDE's helpers")
        page.context.close()
        session = bundle_processes(container)
        stop = container.exec_run(["sh", "-c", ide_module.STOP], user="dev")
        assert stop.output.decode().strip() == "code-server stopped"
        assert set(session) & set(bundle_processes(container)) == set()
    finally:
        page.context.close()
        ann.delete(ws["id"])


def test_an_open_ide_keeps_the_workspace_and_itself_up(ide, page, docker_client, short_ide_idle):
    """An open tab keeps both up past their timeouts (the workspace's 15 s, the IDE's 3 s)
    and past code-server's renewal of its heartbeat, a minute after the last one."""
    ann = ide.clients["ann"]
    ws = ann.create("kept", template="base", parameters={"idle_timeout": "15s"})
    ws = ann.wait(ws["id"], "running", timeout=600)
    name = ide.docker_name(ws["id"])
    try:
        login(page, ide, "ann")
        page.goto(open_url(ide, ws["urls"]["ide"]))
        wait_for_workbench(page)
        first = ide_health(docker_client, name)["lastHeartbeat"]
        wait_until(
            # A /healthz not answered in time (a loaded machine) is "not yet", not a failure.
            lambda: (ide_health(docker_client, name) or {}).get("lastHeartbeat", first) > first,
            90,
            1,
            "code-server renewing its heartbeat for the open tab",
        )
        page.wait_for_timeout(5_000)  # more than the IDE's timeout and two sweeps
        seen = ann.get(ws["id"])
        assert seen["status"] == "running" and seen["ide"]["state"] == "ready"
        assert seen["activity"]["sources"]["ide"]["detail"] in (
            "IDE open in a browser",
            "browser (ann)",
        )
        page.wait_for_selector(".monaco-workbench .part.editor")
    finally:
        page.close()
        ann.delete(ws["id"])


def test_the_ide_opened_the_moment_its_workspace_runs_loads_without_a_502(ide, page):
    """Opened right after "running", the IDE starts: the page that waits for it, then
    the workbench; never the proxy's bare 502."""
    ann = ide.clients["ann"]
    login(page, ide, "ann")
    ann.act(ide.ws["id"], "restart")
    ann.wait(ide.ws["id"], "running")
    answers = []
    page.on("response", lambda r: r.request.is_navigation_request() and answers.append(r.status))
    page.goto(open_url(ide, ide.ws["urls"]["ide"]))
    wait_for_workbench(page)
    assert 502 not in answers and answers[-1] == 200, answers


def test_a_stopped_workspace_starts_from_its_ide_url(ide, page):
    ann = ide.clients["ann"]
    ann.act(ide.ws["id"], "stop")
    ann.wait(ide.ws["id"], "stopped")
    login(page, ide, "ann")
    page.goto(open_url(ide, ide.ws["urls"]["ide"]))
    assert "Starting code" in page.inner_text("[data-testid=apps-title]")
    wait_for_workbench(page, timeout=180_000)  # the page reloads itself until it is up
    jobs = ann.call("GET", f"/workspaces/{ide.ws['id']}/history", 200).json()["transitions"]
    assert jobs[0]["kind"] == "start" and jobs[0]["cause"] == "ide" and jobs[0]["actor"] == "ann"


def test_path_mode_serves_the_ide_under_a_prefix_and_refuses_shared_ports(ide, browser, tmp_path):
    """Without a domain, workspaces live under /@owner/workspace/ on the apps origin."""
    server = start_stack(tmp_path, {"BERTH_APPS_DOMAIN": "none"})
    try:
        ann = server.clients["ann"]
        shutil.copytree(ide.repos / "webapp", server.repos / "webapp")
        ws = ann.wait(
            ann.create("code", repo={"url": str(server.repos / "webapp")})["id"], "running"
        )
        assert ws["urls"]["ide"] == f"http://127.0.0.1:{server.apps_port}/@ann/code/"
        page = browser.new_context().new_page()
        login(page, server, "ann")
        page.goto(open_url(server, ws["urls"]["ide"].rstrip("/")))  # the slash is added
        wait_for_workbench(page)
        assert urlsplit(page.url).path == "/@ann/code/"
        cookies = page.context.cookies(ws["urls"]["ide"])
        assert {c["name"]: c["path"] for c in cookies if c["name"] == "berth_app"} == {
            "berth_app": "/@ann/code/"
        }
        page.context.close()
        refused = ann.call(
            "PUT", f"/workspaces/{ws['id']}/ports/8000", 409, json={"shared": True}
        ).json()
        assert "needs workspace subdomains" in refused["error"]["message"]
    finally:
        stop_stack(server)


def test_the_owners_git_credentials_reach_her_ide_terminal_and_no_one_elses(ide, browser):
    """Inside the IDE, git asks Berth (a helper socket the SSH gateway keeps): the owner's
    terminal gets her token while the workspace is hers alone; once an admin has opened
    the same code-server, no terminal of it does, hers neither (app.workspaces.strangers;
    tests/test_git_credentials.py: the same over SSH)."""
    import secrets

    ann = ide.clients["ann"]
    token = "ghp_" + secrets.token_hex(12)
    kept = ann.call(
        "POST",
        "/users/me/git-credentials",
        201,
        json={"kind": "token", "host": "git.example.com", "token": token},
    ).json()
    ws = ann.create("gitide", template="base")  # an image with git
    ws = ann.wait(ws["id"], "running")
    fill = (
        "printf 'protocol=https\\nhost=git.example.com\\n\\n' | GIT_TERMINAL_PROMPT=0 "
        "git credential fill > /tmp/{0}.txt 2>&1; echo finished >> /tmp/{0}.txt"
    )

    def said(name: str) -> str:
        return ann.exec(ws["id"], ["cat", f"/tmp/{name}.txt"])["stdout"]

    def opened_by(who: str):
        page = browser.new_context().new_page()
        page.set_default_timeout(60_000)
        login(page, ide, who)
        page.goto(ws["urls"]["ide"])
        wait_for_workbench(page)
        return page

    pages = []
    try:
        pages.append(opened_by("ann"))
        run_in_terminal(pages[0], fill.format("ann"), lambda: "finished" in said("ann"))
        assert f"password={token}" in said("ann")
        # An admin opens the same code-server: from then on, the workspace is not hers
        # alone (he could leave something behind) and her own terminal gets nothing.
        pages.append(opened_by("boss"))
        terminal = pages[0].locator(".terminal-wrapper .xterm:visible").last
        terminal.locator(".xterm-helper-textarea").focus()
        pages[0].keyboard.type(fill.format("again"))
        pages[0].keyboard.press("Enter")
        try:
            wait_until(lambda: "finished" in said("again"), 60, 0.5, "the command in her terminal")
        except TimeoutError:  # where it stood, for the next reader of a CI log
            seen = ann.exec(ws["id"], ["sh", "-c", "ps -eo pid,args; ls -la /tmp"])["stdout"]
            pytest.fail(f"her second command did not finish; in the workspace:\n{seen}")
        assert token not in said("again")
    finally:
        for page in pages:
            page.context.close()
        ann.call("DELETE", f"/users/me/git-credentials/{kept['id']}", 204)
        ann.delete(ws["id"])
