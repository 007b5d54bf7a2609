"""Egress control of agent sandboxes on the real engine: the allowlisting proxy outside
the container, the dead DNS, no direct connections, root inside unable to change any of
it, and every attempt on record."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from tests import services
from tests.services import wait_until


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (the http.server name)
        body = b"hello from the allowed host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def allowed_host():
    """A local HTTP server standing in for an allowed internet host: on every address of
    this machine, named by its host name (which the egress gateway resolves)."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Hello)  # noqa: S104
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = socket.gethostname()
    socket.getaddrinfo(name, None)  # the test needs the machine to resolve its own name
    yield name, server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def sandbox(stack, allowed_host):
    ann, boss = stack.clients["ann"], stack.clients["boss"]
    name, port = allowed_host
    # The stand-in host is on this machine, which the proxy refuses unless an admin
    # allows the address on the template (tests/security has the refusal).
    limits = {t["name"]: t for t in boss.call("GET", "/templates", 200).json()}["agent-sandbox"]
    boss.call(
        "PATCH",
        "/templates/agent-sandbox",
        200,
        json={"limits": {**limits["limits"], "egress_private": ["127.0.0.0/8"]}},
    )
    ws = ann.create("egress", template="agent-sandbox", egress=[f"{name}:{port}"])
    done = ann.wait(ws["id"], "running", "failed")
    assert done["status"] == "running", ann.log(ws["id"])
    yield ws["id"]
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def _run(client, ws_id, script: str, timeout: float = 60) -> dict:
    return client.exec(ws_id, ["sh", "-c", script], timeout=timeout)


def _as_root(stack, docker_client, ws_id, script: str) -> tuple[int, str]:
    container = docker_client.containers.get(stack.docker_name(ws_id))
    code, output = container.exec_run(["sh", "-c", script], user="root")
    return code, output.decode(errors="replace")


def test_the_allowed_host_is_reached_through_the_proxy(stack, sandbox, allowed_host):
    ann = stack.clients["ann"]
    name, port = allowed_host
    env = _run(ann, sandbox, "echo $HTTPS_PROXY; cat /etc/resolv.conf")["stdout"]
    assert env.startswith("http://10.231.") and ":3128" in env
    result = _run(ann, sandbox, f"curl -sS --max-time 20 http://{name}:{port}/hello")
    assert result["stdout"] == "hello from the allowed host\n", result
    # The same host on another port, and other hosts, are refused by the proxy.
    for url, expected in (
        ("http://example.com/", "example.com:80 is not in the allowlist of ann.egress"),
        (f"http://{name}:{port + 1}/", f"{name}:{port + 1} is not in the allowlist"),
    ):
        refused = _run(ann, sandbox, f"curl -sS --max-time 20 {url}")
        assert expected in refused["stdout"], refused
    tunnel = _run(ann, sandbox, "curl -sS --max-time 20 https://example.org/")
    assert tunnel["exit_code"] != 0 and "403" in tunnel["stderr"], tunnel


def test_direct_connections_and_dns_fail(stack, sandbox, allowed_host):
    ann = stack.clients["ann"]
    name, port = allowed_host
    gateway = _run(ann, sandbox, "echo $HTTP_PROXY")["stdout"].strip()[7:].split(":")[0]
    for url in (
        "http://1.1.1.1/",  # an internet address
        f"http://{gateway}:{port}/hello",  # the allowed server, directly via the gateway
    ):
        direct = _run(ann, sandbox, f"curl -sS --noproxy '*' --max-time 5 {url}")
        assert direct["exit_code"] != 0 and "hello" not in direct["stdout"], url
    started = time.monotonic()
    lookup = _run(ann, sandbox, "getent hosts example.com; echo rc=$?")
    assert lookup["stdout"].strip() == "rc=2"  # not found...
    assert time.monotonic() - started < 5  # ...at once (answered REFUSED), not a timeout
    lookup = _run(ann, sandbox, f"getent hosts {name}; echo rc=$?")
    assert lookup["stdout"].strip() == "rc=2"  # even the allowed host: only the proxy resolves


def test_root_inside_cannot_change_any_of_it(stack, sandbox, docker_client):
    code, out = _as_root(stack, docker_client, sandbox, "id -u")
    assert out.strip() == "0"
    attempts = (
        # Another resolver: the internal network has no route to it.
        "echo 'nameserver 1.1.1.1' > /etc/resolv.conf; getent hosts example.com",
        # Routes and firewall: no NET_ADMIN (and no tools for it in the image).
        "ip route add default via 10.231.0.1 2>&1 || ip link 2>&1 || false",
        "iptables -F 2>&1 || false",
        # Without the proxy.
        "env -u http_proxy -u HTTP_PROXY curl -sS --max-time 5 http://1.1.1.1/",
        # Writing outside /tmp and the volumes.
        "touch /usr/local/bin/x /etc/hosts.allow",
    )
    for script in attempts:
        code, out = _as_root(stack, docker_client, sandbox, script)
        assert code != 0, (script, out)
    # The sandbox's own user writes where it should.
    done = _run(
        stack.clients["ann"], sandbox, "touch /tmp/ok /workspaces/sandbox/ok ~/ok && echo ok"
    )
    assert done["stdout"] == "ok\n", done


def test_every_attempt_is_on_record_and_the_owner_changes_the_allowlist(
    stack, sandbox, allowed_host
):
    ann = stack.clients["ann"]
    name, port = allowed_host
    _run(
        ann, sandbox, f"curl -s --max-time 20 http://{name}:{port}/hello; getent hosts leak.example"
    )

    def recent() -> list[dict]:
        return ann.call("GET", f"/workspaces/{sandbox}/egress", 200).json()["recent"]

    wait_until(
        lambda: any(
            r["action"] == "egress.dns" and r["detail"]["name"] == "leak.example" for r in recent()
        ),
        timeout=10,
        what="the DNS lookup on record",
    )
    found = recent()
    allowed = [r for r in found if r["action"] == "egress.allow"]
    assert allowed and allowed[0]["detail"]["host"] == name and allowed[0]["detail"]["port"] == port
    assert allowed[0]["detail"]["bytes_in"] > 0 and allowed[0]["outcome"] == "success"
    denied = {
        (r["detail"]["host"], r["detail"]["port"]) for r in found if r["action"] == "egress.deny"
    }
    assert ("example.com", 80) in denied and ("example.org", 443) in denied
    assert all(r["target"] == "workspace:ann.egress" for r in found)
    view = ann.call("GET", f"/workspaces/{sandbox}/egress", 200).json()
    assert view["controlled"] is True and view["allow"]["workspace"] == [f"{name}:{port}"]
    page = services.web_session(stack.url, "ann").get(f"{stack.url}/workspaces/{sandbox}").text
    assert 'data-testid="egress"' in page and 'data-egress="egress.deny"' in page
    assert "<code>example.com:80</code>" in page and "<code>leak.example</code>" in page

    # A token limited to the sandbox (what the agent holds) cannot widen it...
    agent = ann.call(
        "POST", "/users/me/tokens", 201, json={"workspace": sandbox, "lifetime": "1h"}
    ).json()["token"]
    from tests.berthapi import Client

    widened = Client(stack.url, agent).call(
        "PUT", f"/workspaces/{sandbox}/egress", json={"allow": ["*.example.com"]}
    )
    assert widened.status_code == 403 and widened.json()["error"]["code"] == "token_limited"
    # ...its owner can; the gateway sees the change within seconds.
    bad = ann.call("PUT", f"/workspaces/{sandbox}/egress", json={"allow": ["bad host!"]})
    assert (
        bad.status_code == 422
        and "'bad host!' is not a host name" in bad.json()["error"]["message"]
    )
    # (localhost itself is refused to the owner: only an admin allows this machine.)
    local = ann.call("PUT", f"/workspaces/{sandbox}/egress", json={"allow": [f"localhost:{port}"]})
    assert local.status_code == 422 and "only an admin" in local.json()["error"]["message"]
    second = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Hello)  # noqa: S104
    threading.Thread(target=second.serve_forever, daemon=True).start()
    other = second.server_address[1]
    ann.call("PUT", f"/workspaces/{sandbox}/egress", 200, json={"allow": [f"{name}:{other}"]})
    probe = f"curl -s --noproxy '' -x $HTTP_PROXY --max-time 10 http://{name}:{other}/hello"
    try:
        wait_until(
            lambda: _run(ann, sandbox, probe)["stdout"] == "hello from the allowed host\n",
            timeout=15,
            what="the new allowlist in force",
        )
    finally:
        second.shutdown()
    # The old entry is gone with the replacement.
    gone = _run(ann, sandbox, f"curl -s --max-time 10 http://{name}:{port}/hello")
    assert "is not in the allowlist" in gone["stdout"]
