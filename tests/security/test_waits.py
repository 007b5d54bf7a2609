"""A request that waits for its job holds one of the web server's long-request slots.
It takes the slot before it asks for anything: when none is free it is refused with 503
and nothing was created or requested (a refusal after the fact would leave a workspace
or a job its client does not know of). The same request without ``wait`` goes through."""

from __future__ import annotations

from app.db import database
from app.models import Transition, Workspace
from tests.test_governance import app, call, tokens  # noqa: F401  (fixtures)


def _counts() -> tuple[int, int]:
    with database.connection_context():
        return Workspace.select().count(), Transition.select().count()


def test_a_wait_with_no_free_slot_is_refused_and_asks_for_nothing(app, tokens):  # noqa: F811
    client = app.test_client()
    slots = app.extensions["berth_slots"]
    give_back = [slots.take(f"someone-{n}") for n in range(slots.limit)]
    try:
        before = _counts()
        body = {"name": "waiting", "template": "base", "wait": 30}
        refused = call(client, tokens["mia"], "POST", "/workspaces", json=body)
        assert refused.status_code == 503
        assert "too many long-running requests" in refused.get_data(as_text=True)
        assert _counts() == before

        # Without wait: no slot needed, created.
        made = call(client, tokens["mia"], "POST", "/workspaces", json={**body, "wait": False})
        assert made.status_code == 201, made.get_json()
        ws_id = made.get_json()["id"]
        with database.connection_context():
            Workspace.update(status="running").where(Workspace.id == ws_id).execute()
            database.execute_sql("UPDATE transitions SET status = 'succeeded'")
        before = _counts()
        stop = call(client, tokens["mia"], "POST", f"/workspaces/{ws_id}/stop?wait=true")
        assert stop.status_code == 503
        assert _counts() == before
        with database.connection_context():
            assert Workspace.get_by_id(ws_id).status == "running"
        assert call(client, tokens["mia"], "POST", f"/workspaces/{ws_id}/stop").status_code == 202
    finally:
        for back in give_back:
            back()
    assert slots.taken == 0
