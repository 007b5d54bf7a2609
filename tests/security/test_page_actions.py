"""The workspace page's live parts, its actions and its confirmations give nobody more
than the API would: the live view of a hidden workspace answers like the page (404),
someone it is shared with is offered only a start, rebuild and delete happen only from
their confirmation, and a member is not offered the admin scope for a token."""

import json

from app.db import database
from app.models import Transition, Workspace
from tests.test_governance import app, call, shared_ws, tokens  # noqa: F401 (fixtures)
from tests.test_web import csrf_of, login


def _client(app, person):  # noqa: F811
    client = app.test_client()
    login(client, person, f"{person}-password")
    return client


def _jobs(ws_id):
    with database.connection_context():
        return [t.kind for t in Transition.select().where(Transition.workspace == ws_id)]


def test_the_live_view_of_a_hidden_workspace_answers_like_its_page(app, shared_ws):  # noqa: F811
    olga = _client(app, "olga")
    page, live = olga.get(f"/workspaces/{shared_ws}"), olga.get(f"/workspaces/{shared_ws}/live")
    assert page.status_code == live.status_code == 404
    assert f"There is no workspace {shared_ws}." in live.get_data(as_text=True)
    missing = olga.get("/workspaces/987654/live")
    assert missing.status_code == 404 and "There is no workspace 987654." in missing.get_data(
        as_text=True
    )


def test_the_live_view_offers_each_person_only_what_they_may_do(app, tokens, shared_ws):  # noqa: F811
    opened = call(app.test_client(), tokens["mia"], "PUT", f"/workspaces/{shared_ws}/ports/8000")
    assert opened.status_code == 200, opened.get_json()
    sam = json.loads(_client(app, "sam").get(f"/workspaces/{shared_ws}/live").data)
    head = sam["parts"]["head"]
    assert 'data-action="start"' in head
    for other in ("stop", "restart", "rebuild", "backup", "delete"):
        assert f'data-action="{other}"' not in head, other
    assert 'data-port="8000"' in sam["parts"]["ports"]
    assert "<form" not in sam["parts"]["ports"]  # no share, no close
    mia = json.loads(_client(app, "mia").get(f"/workspaces/{shared_ws}/live").data)
    for offered in ("start", "rebuild", "backup", "delete"):
        assert f'data-action="{offered}"' in mia["parts"]["head"], offered
    assert 'data-action="stop"' not in mia["parts"]["head"]  # it is stopped
    assert "/ports/8000/close" in mia["parts"]["ports"]
    aud = json.loads(_client(app, "aud").get(f"/workspaces/{shared_ws}/live").data)
    assert "data-action" not in aud["parts"]["head"]


def test_rebuild_and_delete_happen_only_from_their_confirmation(app, shared_ws):  # noqa: F811
    mia = _client(app, "mia")
    before = _jobs(shared_ws)
    for action in ("rebuild", "delete"):
        token = csrf_of(mia.get(f"/workspaces/{shared_ws}").get_data(as_text=True))
        answer = mia.post(f"/workspaces/{shared_ws}/{action}", data={"csrf_token": token})
        assert answer.status_code == 302
        assert answer.headers["Location"].endswith(f"/workspaces/{shared_ws}/confirm/{action}")
        assert _jobs(shared_ws) == before, action
    page = mia.get(f"/workspaces/{shared_ws}/confirm/delete").get_data(as_text=True)
    assert "Delete code?" in page and "workspace folder" in page
    token = csrf_of(page)
    answer = mia.post(
        f"/workspaces/{shared_ws}/delete",
        data={"csrf_token": token, "confirmed": "yes", "keep_volumes": "on"},
    )
    assert answer.status_code == 302 and _jobs(shared_ws) == [*before, "delete"]
    with database.connection_context():
        job = Transition.select().where(Transition.kind == "delete").get()
        assert json.loads(job.options) == {"keep_volumes": True, "backup_first": False}


def test_a_confirmation_page_is_for_those_who_may_act(app, shared_ws):  # noqa: F811
    assert _client(app, "sam").get(f"/workspaces/{shared_ws}/confirm/delete").status_code == 403
    assert _client(app, "olga").get(f"/workspaces/{shared_ws}/confirm/rebuild").status_code == 404
    mia = _client(app, "mia")
    assert mia.get(f"/workspaces/{shared_ws}/confirm/stop").status_code == 404
    with database.connection_context():
        Workspace.update(status="deleting").where(Workspace.id == shared_ws).execute()
    page = mia.get(f"/workspaces/{shared_ws}/confirm/rebuild").get_data(as_text=True)
    assert "it cannot rebuild now" in page and "confirmed" not in page


def test_a_member_is_not_offered_the_admin_scope(app):  # noqa: F811
    member = _client(app, "mia").get("/account/").get_data(as_text=True)
    assert 'value="workspaces:read"' in member and 'value="admin"' not in member
    admin = _client(app, "root").get("/account/").get_data(as_text=True)
    assert 'value="admin"' in admin


def test_listening_ports_are_read_only_by_those_who_see_the_workspace(app, tokens, shared_ws):  # noqa: F811
    client = app.test_client()
    hidden = call(client, tokens["olga"], "GET", f"/workspaces/{shared_ws}/listening")
    assert hidden.status_code == 404
    stopped = call(client, tokens["sam"], "GET", f"/workspaces/{shared_ws}/listening")
    assert (
        stopped.status_code == 409
        and "is stopped, not running" in stopped.get_json()["error"]["message"]
    )
    ports = call(client, tokens["mia"], "GET", f"/workspaces/{shared_ws}/ports")
    assert ports.status_code == 200 and ports.get_json() == []
