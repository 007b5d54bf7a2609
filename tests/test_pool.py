"""The warm pool on the real engine: filled in the background, claimed by an API create
that returns exec-ready at once, indistinguishable from a fresh sandbox, refilled."""

from __future__ import annotations

import time

import pytest

from tests.services import wait_until


def _pooled(boss) -> list[dict]:
    return [
        w
        for w in boss.call("GET", "/workspaces", 200).json()
        if w["owner"] == "berth-pool" and w["status"] == "pooled"
    ]


@pytest.fixture(scope="module")
def pool(stack):
    boss = stack.clients["boss"]
    template = next(
        t for t in boss.call("GET", "/templates", 200).json() if t["name"] == "agent-sandbox"
    )
    limits = {**template["limits"], "pool_size": 2}
    boss.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": limits})
    wait_until(lambda: len(_pooled(boss)) == 2, timeout=300, what="two pooled sandboxes")
    yield boss
    boss.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": template["limits"]})
    for ws in boss.call("GET", "/workspaces", 200).json():
        if ws["owner"] == "berth-pool":
            boss.call("DELETE", f"/workspaces/{ws['id']}", 202)


def test_a_claim_is_exec_ready_at_once_and_looks_fresh(stack, pool):
    ann = stack.clients["ann"]
    waiting = {w["id"] for w in _pooled(pool)}
    started = time.monotonic()
    ws = ann.call(
        "POST",
        "/workspaces",
        201,
        json={"name": "quick", "template": "agent-sandbox", "wait": True, "ttl": "20m"},
    ).json()
    elapsed = time.monotonic() - started
    assert ws["id"] in waiting and ws["status"] == "running" and ws["owner"] == "ann"
    assert elapsed < 1.0, f"a claim took {elapsed:.2f} s"
    ran = ann.exec(ws["id"], ["sh", "-c", "hostname; pwd; ls -A; cat /run/berth/token"])
    hostname, folder, *rest = ran["stdout"].splitlines()
    assert hostname == f"sandbox-{ws['id']}" and folder == "/workspaces/sandbox"
    token = rest[-1]
    assert rest[:-1] == []  # clean: nothing in the workspace folder
    # Its token is the new owner's, limited to it, and also in every exec's environment.
    assert ann.sh(ws["id"], "printf %s $BERTH_TOKEN") == token
    from tests.berthapi import Client

    me = Client(stack.url, token).call("GET", "/me", 200).json()
    assert me["username"] == "ann" and me["token"]["workspace_id"] == ws["id"]
    history = ann.call("GET", f"/workspaces/{ws['id']}/history", 200).json()
    assert history["changes"][0]["message"] == "claimed from the warm pool"
    assert ws["ttl_expires_at"] is not None
    # The pool refills in the background.
    wait_until(lambda: len(_pooled(pool)) == 2, timeout=300, what="the pool refilled")
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_requests_the_pool_cannot_serve_get_a_fresh_sandbox(stack, pool):
    ann = stack.clients["ann"]
    waiting = {w["id"] for w in _pooled(pool)}
    ws = ann.call(
        "POST",
        "/workspaces",
        201,
        json={
            "name": "custom",
            "template": "agent-sandbox",
            "parameters": {"cpu": 0.5},
            "wait": True,
        },
    ).json()
    assert ws["id"] not in waiting and ws["status"] == "running"
    assert ann.sh(ws["id"], "hostname").strip() == f"sandbox-{ws['id']}"
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)
    bad = stack.clients["boss"].call(
        "PATCH", "/templates/agent-sandbox", json={"limits": {"pool_size": 1000}}
    )
    assert bad.status_code == 422 and "pool_size must be a whole number from 0 to 100" in bad.text
