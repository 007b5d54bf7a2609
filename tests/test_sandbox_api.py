"""The agent API on real sandboxes: create and wait until exec-ready, streaming exec with
stdin and a timeout, files in and out, the sandbox's own token (BERTH_TOKEN) used from
inside through the egress proxy, and "done"."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest
import requests

from tests.berthapi import Client


@pytest.fixture(scope="module")
def sandbox(stack):
    ann = stack.clients["ann"]
    started = time.monotonic()
    ws = ann.call(
        "POST",
        "/workspaces",
        201,
        json={"name": "agent", "template": "agent-sandbox", "wait": True},
    ).json()
    assert ws["status"] == "running", ann.log(ws["id"])
    print(f"create with wait: {time.monotonic() - started:.1f} s")
    yield ws["id"]
    if ann.call("GET", f"/workspaces/{ws['id']}").status_code == 200:  # not done yet
        ann.delete(ws["id"])
        ann.wait(ws["id"], "deleted", timeout=120)


def _stream(stack, ws_id, body: dict) -> tuple[list[dict], list[float]]:
    """The NDJSON events and when each arrived (seconds after the request)."""
    ann = stack.clients["ann"]
    started = time.monotonic()
    response = requests.post(
        f"{stack.url}/api/v2/workspaces/{ws_id}/exec",
        headers={"Authorization": f"Bearer {ann.token}"},
        json={**body, "stream": True},
        stream=True,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    events, times = [], []
    for line in response.iter_lines():
        events.append(json.loads(line))
        times.append(time.monotonic() - started)
    return events, times


def test_streaming_exec_delivers_output_as_it_comes(stack, sandbox):
    events, times = _stream(
        stack, sandbox, {"command": ["sh", "-c", "echo first; sleep 2; echo second >&2; exit 3"]}
    )
    assert events[0] == {"stream": "stdout", "data": "first\n"}
    assert events[1] == {"stream": "stderr", "data": "second\n"}
    assert events[-1] == {"exit_code": 3, "timed_out": False}
    assert times[0] < 1.5 and times[1] >= 2  # the first line came before the sleep ended


def test_stdin_and_timeout(stack, sandbox):
    ann = stack.clients["ann"]
    done = ann.call(
        "POST",
        f"/workspaces/{sandbox}/exec",
        200,
        json={"command": ["sh", "-c", "tr a-z A-Z; echo done >&2"], "stdin": "hello\nagent\n"},
    ).json()
    assert done == {
        "exit_code": 0,
        "timed_out": False,
        "stdout": "HELLO\nAGENT\n",
        "stderr": "done\n",
    }
    events, times = _stream(stack, sandbox, {"command": ["sleep", "30"], "timeout": 2})
    assert events[-1] == {"exit_code": -1, "timed_out": True} and times[-1] < 10
    bad = ann.call("POST", f"/workspaces/{sandbox}/exec", json={"command": ["true"], "stdin": 5})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_stdin"


def test_file_round_trip(stack, sandbox):
    ann = stack.clients["ann"]
    http = ann.session  # carries the token
    base = f"{stack.url}/api/v2/workspaces/{sandbox}/files"
    payload = bytes(range(256)) * 1000  # binary, 256 kB
    put = http.put(base, params={"path": "data/blob.bin"}, data=payload, timeout=60)
    assert put.status_code == 201, put.text
    assert put.json() == {"path": "/workspaces/sandbox/data/blob.bin", "bytes": len(payload)}
    got = http.get(base, params={"path": "data/blob.bin"}, timeout=60)
    assert got.status_code == 200 and got.content == payload
    # Written as the sandbox user, readable by the commands the agent runs.
    owner = ann.sh(sandbox, "stat -c %U /workspaces/sandbox/data/blob.bin").strip()
    assert owner == "dev"
    http.put(base, params={"path": "/tmp/notes/a.txt"}, data=b"in tmp\n", timeout=60)
    archive = http.get(base, params={"path": "data"}, timeout=60)
    assert archive.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert tar.extractfile("./blob.bin").read() == payload
    # The read-only root refuses; a missing file is a 404.
    refused = http.put(base, params={"path": "/etc/evil"}, data=b"x", timeout=60)
    assert (
        refused.status_code == 422 and "Read-only file system" in refused.json()["error"]["message"]
    )
    missing = http.get(base, params={"path": "nothing/here"}, timeout=60)
    assert missing.status_code == 404
    assert http.get(base, timeout=60).status_code == 422


def test_the_sandbox_token_from_inside_and_done(stack, sandbox):
    ann, bob = stack.clients["ann"], stack.clients["bob"]
    env = ann.sh(sandbox, "echo $BERTH_URL $BERTH_WORKSPACE_ID; printf %s $BERTH_TOKEN | wc -c")
    url, ws_id, length = env.split()
    # Berth's URL is on this machine's loopback here; inside, it has a name of its own.
    assert url == stack.url.replace("127.0.0.1", "berth.internal"), url
    assert ws_id == str(sandbox) and int(length) > 40
    # From inside, through the egress proxy (Berth's own URL is always allowed).
    script = (
        'curl -s -X POST -H "Authorization: Bearer $BERTH_TOKEN" -d "{}" '
        '-H "Content-Type: application/json" -o /dev/null -w "%{http_code}" '
        '"$BERTH_URL/api/v2/workspaces/$BERTH_WORKSPACE_ID/activity"'
    )
    keepalive = ann.exec(sandbox, ["sh", "-c", script])
    assert keepalive["stdout"] == "200", keepalive
    token = ann.sh(sandbox, "printf %s $BERTH_TOKEN")
    inside = Client(stack.url, token)
    other = bob.create("not-yours", template="base")
    assert inside.call("GET", f"/workspaces/{other['id']}").status_code == 403
    assert inside.call("GET", "/workspaces").json()[0]["id"] == sandbox
    assert (
        inside.call("PUT", f"/workspaces/{sandbox}/egress", json={"allow": ["*.com"]}).status_code
        == 403
    )
    bob.delete(other["id"])
    # Done: recorded and deleted; the token dies with the sandbox.
    done = inside.call(
        "POST",
        f"/workspaces/{sandbox}/done",
        202,
        json={"outcome": "success", "summary": "fixed #42"},
    ).json()
    assert done["outcome"] == "success"
    ann.wait(sandbox, "deleted", timeout=120)
    history = ann.call("GET", f"/workspaces/{sandbox}/history", 200).json()
    assert any(t["kind"] == "delete" and "reported it done (success)" in (t["reason"] or "")
               for t in history["transitions"])  # fmt: skip
    assert inside.call("GET", "/me").status_code == 401
    record = (
        stack.clients["boss"]
        .call("GET", "/audit", 200, params={"action": "sandbox.done", "workspace": "ann.agent"})
        .json()[0]
    )
    assert record["detail"]["summary"] == "fixed #42" and record["outcome"] == "success"
    bob.wait(other["id"], "deleted", timeout=120)
