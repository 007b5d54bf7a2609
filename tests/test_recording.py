"""Session recording in an agent sandbox: a pty SSH session (the real OpenSSH client)
as asciicast v2, replayed in Chromium by Berth's own player; an exec as its command,
output and exit code; both referenced from the audit log, kept after deletion."""

from __future__ import annotations

import json
import subprocess

import pytest


@pytest.fixture(scope="module")
def recorded(stack, tmp_path_factory):
    ann = stack.clients["ann"]
    key = tmp_path_factory.mktemp("rec") / "id_ann"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ann.call(
        "POST", "/users/me/keys", 201, json={"public_key": key.with_suffix(".pub").read_text()}
    )
    ws = ann.call(
        "POST", "/workspaces", 201, json={"name": "rec", "template": "agent-sandbox", "wait": True}
    ).json()
    assert ws["status"] == "running"
    options = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-i", str(key)]  # fmt: skip
    session = subprocess.run(
        ["ssh", *options, "-tt", "-p", str(stack.ssh_port), "rec@127.0.0.1",
         "echo recorded-$((6*7)); printf 'over\\rOVER\\n'; exit 3"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert session.returncode == 3, session.stderr
    ran = ann.exec(ws["id"], ["sh", "-c", "echo out; echo err >&2; exit 2"])
    assert ran["exit_code"] == 2
    return ws["id"]


def test_recordings_are_kept_with_their_output(stack, recorded):
    ann = stack.clients["ann"]
    rows = ann.call("GET", f"/workspaces/{recorded}/recordings", 200).json()
    by_kind = {row["kind"]: row for row in rows}
    assert set(by_kind) == {"ssh", "exec"}
    assert by_kind["ssh"]["exit_code"] == 3 and by_kind["exec"]["exit_code"] == 2
    cast = ann.call("GET", f"/workspaces/{recorded}/recordings/{by_kind['ssh']['id']}", 200)
    assert cast.headers["Content-Type"].startswith("application/x-asciicast")
    header, *events = [json.loads(line) for line in cast.text.splitlines()]
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "recorded-42" in output
    assert all(isinstance(e[0], float | int) for e in events)
    run = ann.call("GET", f"/workspaces/{recorded}/recordings/{by_kind['exec']['id']}", 200).json()
    assert run["command"] == ["sh", "-c", "echo out; echo err >&2; exit 2"]
    # Two streams written one after the other may still arrive in either order.
    assert sorted(o[:2] for o in run["output"]) == [["stderr", "err\n"], ["stdout", "out\n"]]
    # The audit log refers to them.
    boss = stack.clients["boss"]
    ended = boss.call(
        "GET", "/audit", 200, params={"action": "ssh.session.end", "workspace": "ann.rec"}
    ).json()
    assert ended[0]["detail"]["recording"] == by_kind["ssh"]["id"]
    execs = boss.call(
        "GET", "/audit", 200, params={"action": "exec", "workspace": "ann.rec"}
    ).json()
    assert execs[0]["detail"]["recording"] == by_kind["exec"]["id"]


def test_the_player_replays_the_session_in_the_browser(stack, recorded, page):
    ann = stack.clients["ann"]
    rows = ann.call("GET", f"/workspaces/{recorded}/recordings", 200).json()
    ssh = next(r for r in rows if r["kind"] == "ssh")
    page.goto(stack.url + "/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "ann-password")
    page.click("button[type=submit]")
    page.wait_for_url(stack.url + "/")
    page.goto(f"{stack.url}/workspaces/{recorded}")
    assert page.locator("[data-testid=recordings] tr[data-recording=ssh]").count() == 1
    page.goto(f"{stack.url}/workspaces/{recorded}/recordings/{ssh['id']}")
    page.wait_for_selector("[data-player][data-state=ended]", timeout=20000)
    screen = page.locator("[data-testid=player-screen]").inner_text()
    assert "recorded-42" in screen
    assert "OVER" in screen and "over" not in screen  # the carriage return overwrote it
    assert page.locator("[data-testid=recording-exit]").inner_text() == "3"
    # Kept after the sandbox is gone.
    ann.delete(recorded)
    ann.wait(recorded, "deleted", timeout=120)
    assert len(ann.call("GET", f"/workspaces/{recorded}/recordings", 200).json()) == 2
    page.goto(f"{stack.url}/workspaces/{recorded}/recordings/{ssh['id']}")
    page.wait_for_selector("[data-player][data-state=ended]", timeout=20000)
