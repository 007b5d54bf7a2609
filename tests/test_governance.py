"""Roles, sharing, token scopes and the audit trail, in-process (Flask's test client on
SQLite): the role x action matrix over the API and the pages, every cell asserted.
The same rules over SSH, exec and the IDE on real containers: tests/test_sharing.py."""

from datetime import timedelta

import pytest

from app import accounts, audit, groups, migrations
from app.config import Settings
from app.db import database
from app.factory import create_app
from app.http.extensions import limiter
from app.models import AuditEvent, Workspace, stamp
from app.workspaces import templates
from tests.test_web import form_post, login

PEOPLE = {
    "root": "admin",
    "tina": "template-admin",
    "mia": "member",  # owns the workspace
    "sam": "member",  # in the group it is shared with
    "olga": "member",  # nothing to do with it
    "aud": "auditor",
}


@pytest.fixture
def app(tmp_path):
    settings = Settings.load(
        {"data_dir": str(tmp_path / "data"), "token_max_lifetime": "30d"}, environ={}
    )
    flask_app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        templates.sync_builtin()
        for name, role in PEOPLE.items():
            accounts.create_user(name, f"{name}-password", role)
        team = groups.create("team")
        groups.add_member(team, accounts.find_user("sam"))
    limiter.reset()
    yield flask_app


@pytest.fixture
def tokens(app):
    with database.connection_context():
        return {
            name: accounts.create_token(accounts.find_user(name), "t", timedelta(days=1))[1]
            for name in PEOPLE
        }


def call(client, token, method, path, **kwargs):
    return client.open(
        f"/api/v2{path}", method=method, headers={"Authorization": f"Bearer {token}"}, **kwargs
    )


@pytest.fixture
def shared_ws(app, tokens):
    client = app.test_client()
    made = call(
        client, tokens["mia"], "POST", "/workspaces", json={"name": "code", "template": "base"}
    )
    assert made.status_code == 201, made.get_json()
    ws_id = made.get_json()["id"]
    with database.connection_context():
        # No worker here: put it where the transitions below are possible.
        Workspace.update(status="stopped").where(Workspace.id == ws_id).execute()
        database.execute_sql("UPDATE transitions SET status = 'succeeded'")
    shared = call(client, tokens["mia"], "PUT", f"/workspaces/{ws_id}/shares/groups/team")
    assert shared.status_code == 200 and shared.get_json()[0]["name"] == "team"
    return ws_id


ALLOWED, FORBIDDEN, HIDDEN = "allowed", 403, 404
# Who may do what on mia's workspace (shared with the group "team", which sam is in).
WORKSPACE_MATRIX = {
    # action: (root, tina, mia, sam, olga, aud)
    "read": (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, ALLOWED),
    "history": (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, ALLOWED),
    "exec": (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, FORBIDDEN),
    "keepalive": (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, FORBIDDEN),
    "start": (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, FORBIDDEN),
    "stop": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
    "config": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
    "ttl": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
    "open-port": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
    "share": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
    "delete": (ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN),
}
REQUESTS = {
    "read": ("GET", "", None),
    "history": ("GET", "/history", None),
    "exec": ("POST", "/exec", {"command": ["true"]}),
    "keepalive": ("POST", "/activity", {}),
    "start": ("POST", "/start", None),
    "stop": ("POST", "/stop", None),
    "config": ("PUT", "/config", {"config": ".devcontainer/devcontainer.json"}),
    "ttl": ("PUT", "/ttl", {"ttl": "2h"}),
    "open-port": ("PUT", "/ports/8000", {"shared": False}),
    "share": ("PUT", "/shares/users/root", None),
    "delete": ("DELETE", "", None),
}


def _outcome(response):
    if response.status_code in (403, 404):
        return response.status_code
    return ALLOWED


@pytest.mark.parametrize("action", list(WORKSPACE_MATRIX))
def test_workspace_matrix_over_the_api(app, tokens, shared_ws, action):
    client = app.test_client()
    method, suffix, body = REQUESTS[action]
    for person, expected in zip(PEOPLE, WORKSPACE_MATRIX[action], strict=True):
        response = call(
            client, tokens[person], method, f"/workspaces/{shared_ws}{suffix}", json=body
        )
        assert _outcome(response) == expected, (person, action, response.get_json())
        if expected == FORBIDDEN:
            message = response.get_json()["error"]["message"]
            assert "this needs" in message and "mia.code" in message, message
        if action in ("stop", "config") and expected == ALLOWED:
            # Refused for its state (stopped; no repository), after authorization.
            assert response.status_code == 409
        if action == "delete" and expected == ALLOWED:
            break  # the first allowed delete removes it for the rest


INSTANCE_MATRIX = [
    # (method, path, body), (root, tina, mia, sam, olga, aud)
    (("POST", "/workspaces", {"template": "base"}),
     (ALLOWED, ALLOWED, ALLOWED, ALLOWED, ALLOWED, FORBIDDEN)),
    (("PATCH", "/templates/base", {"limits": {"max_cpu": 2}}),
     (ALLOWED, ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    (("GET", "/audit", None),
     (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED)),
    (("GET", "/users", None),
     (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED)),
    (("PATCH", "/users/olga", {"role": "member"}),
     (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
    (("PUT", "/groups/team/members/olga", None),
     (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN)),
]  # fmt: skip


@pytest.mark.parametrize("cell", INSTANCE_MATRIX, ids=lambda c: f"{c[0][0]} {c[0][1]}")
def test_instance_matrix_over_the_api(app, tokens, cell):
    client = app.test_client()
    (method, path, body), row = cell
    for person, expected in zip(PEOPLE, row, strict=True):
        if method == "POST" and path == "/workspaces":
            body = {**body, "name": f"new-{person}"}
        response = call(client, tokens[person], method, path, json=body)
        assert _outcome(response) == expected, (person, path, response.get_json())
        if expected == FORBIDDEN:
            assert f"your role ({PEOPLE[person]})" in response.get_json()["error"]["message"]


# Pages: (path, method, form) -> (root, tina, mia, sam, olga, aud); ALLOWED = 200 or 302.
def test_matrix_over_the_pages(app, shared_ws):
    pages = {
        ("GET", f"/workspaces/{shared_ws}"): (ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, ALLOWED),
        ("GET", f"/workspaces/{shared_ws}/live"): (
            ALLOWED, HIDDEN, ALLOWED, ALLOWED, HIDDEN, ALLOWED,
        ),
        ("GET", f"/workspaces/{shared_ws}/confirm/delete"): (
            ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN,
        ),
        ("POST", f"/workspaces/{shared_ws}/rebuild"): (
            ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN,
        ),
        ("POST", f"/workspaces/{shared_ws}/stop"): (
            ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN,
        ),
        ("POST", f"/workspaces/{shared_ws}/shares"): (
            ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN,
        ),
        ("POST", f"/workspaces/{shared_ws}/config"): (
            ALLOWED, HIDDEN, ALLOWED, FORBIDDEN, HIDDEN, FORBIDDEN,
        ),
        ("GET", "/workspaces/new"): (ALLOWED, ALLOWED, ALLOWED, ALLOWED, ALLOWED, FORBIDDEN),
        ("GET", "/admin/"): (ALLOWED, ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED),
        ("GET", "/admin/audit"): (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED),
        ("GET", "/admin/templates/1"): (
            ALLOWED, ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN,
        ),
        ("GET", "/admin/people"): (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, ALLOWED),
        ("POST", "/admin/groups"): (ALLOWED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    }  # fmt: skip
    for person in PEOPLE:
        client = app.test_client()
        login(client, person, f"{person}-password")
        for (method, path), row in pages.items():
            expected = row[list(PEOPLE).index(person)]
            if method == "GET":
                status = client.get(path).status_code
            else:
                page = client.get("/account/")
                token = page.get_data(as_text=True).split('name="csrf_token" value="')[1]
                status = client.post(
                    path,
                    data={"csrf_token": token.split('"')[0], "name": "root", "kind": "user"},
                ).status_code
            assert (ALLOWED if status in (200, 302) else status) == expected, (person, path)


def test_the_shared_list_and_the_workspace_page_show_what_each_may_do(app, shared_ws):
    client = app.test_client()
    login(client, "sam", "sam-password")
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="shared-table"' in home and 'data-workspace="mia.code"' in home
    page = client.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    assert "Open in browser" in page and ">Start<" in page
    assert (
        ">Stop<" not in page and ">Delete<" not in page and 'data-testid="share-form"' not in page
    )
    client = app.test_client()
    login(client, "aud", "aud-password")
    page = client.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    assert "Open in browser" not in page and ">Start<" not in page
    assert "New workspace" not in client.get("/").get_data(as_text=True)


def test_revoking_a_share_takes_access_away(app, tokens, shared_ws):
    client = app.test_client()
    assert call(client, tokens["sam"], "GET", f"/workspaces/{shared_ws}").status_code == 200
    gone = call(client, tokens["mia"], "DELETE", f"/workspaces/{shared_ws}/shares/groups/team")
    assert gone.status_code == 204
    assert call(client, tokens["sam"], "GET", f"/workspaces/{shared_ws}").status_code == 404
    again = call(client, tokens["mia"], "DELETE", f"/workspaces/{shared_ws}/shares/groups/team")
    assert (
        again.status_code == 404 and "not shared with group" in again.get_json()["error"]["message"]
    )
    bad = call(client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/shares/users/nobody")
    assert bad.status_code == 422 and "no user named 'nobody'" in bad.get_json()["error"]["message"]
    own = call(client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/shares/users/mia")
    assert own.status_code == 422 and "owns this workspace" in own.get_json()["error"]["message"]
    # Sharing with one person, directly.
    assert (
        call(client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/shares/users/olga").status_code
        == 200
    )
    assert call(client, tokens["olga"], "GET", f"/workspaces/{shared_ws}").status_code == 200
    listed = call(client, tokens["olga"], "GET", "/workspaces").get_json()
    assert [w["id"] for w in listed] == [shared_ws]


def test_token_scopes(app, tokens, shared_ws):
    client = app.test_client()
    made = call(
        client,
        tokens["mia"],
        "POST",
        "/users/me/tokens",
        json={"name": "reader", "scopes": ["workspaces:read"], "lifetime": "1h"},
    )
    assert made.status_code == 201, made.get_json()
    reader = made.get_json()["token"]
    assert made.get_json()["scopes"] == ["workspaces:read"]
    assert call(client, reader, "GET", f"/workspaces/{shared_ws}").status_code == 200
    for method, suffix, body in (
        ("POST", "/exec", {"command": ["true"]}),
        ("POST", "/start", None),
        ("DELETE", "", None),
    ):
        refused = call(client, reader, method, f"/workspaces/{shared_ws}{suffix}", json=body)
        assert refused.status_code == 403, suffix
        assert refused.get_json()["error"]["code"] == "insufficient_scope"
    # Making tokens takes the account scope; a narrow token cannot mint a wider one.
    wider = call(client, reader, "POST", "/users/me/tokens", json={"scopes": ["workspaces:read"]})
    assert wider.status_code == 403 and "lacks the scope 'account'" in wider.text
    minter = call(
        client,
        tokens["mia"],
        "POST",
        "/users/me/tokens",
        json={"scopes": ["workspaces:read", "account"], "lifetime": "1h"},
    ).get_json()["token"]
    wider = call(client, minter, "POST", "/users/me/tokens", json={"scopes": ["workspaces:write"]})
    assert wider.status_code == 403 and "cannot grant the scope 'workspaces:write'" in wider.text
    # A token never makes one that outlives it (these live a day); without a lifetime,
    # the new one ends with it.
    long = call(client, tokens["mia"], "POST", "/users/me/tokens", json={"lifetime": "2d"})
    assert long.status_code == 403 and long.get_json()["error"]["code"] == "token_outlives_caller"
    same = call(client, tokens["mia"], "POST", "/users/me/tokens", json={}).get_json()
    with database.connection_context():
        parent = accounts.verify_token(tokens["mia"])
    assert same["expires_at"] == stamp(parent.expires_at)
    # The admin's maximum lifetime (30d here), for a token that may outlive it.
    with database.connection_context():
        forever = accounts.create_token(accounts.find_user("mia"), "forever")[1]
    for lifetime in ("31d", None):
        long = call(client, forever, "POST", "/users/me/tokens", json={"lifetime": lifetime})
        assert long.status_code == 422 and "at most 30d" in long.get_json()["error"]["message"]
    unknown = call(client, tokens["mia"], "POST", "/users/me/tokens", json={"scopes": ["root"]})
    assert unknown.status_code == 422 and "scope 'root' does not exist" in unknown.text
    # The admin scope is needed for admin routes even by an admin.
    made = call(
        client,
        tokens["root"],
        "POST",
        "/users/me/tokens",
        json={"scopes": ["workspaces:read"], "lifetime": "1h"},
    )
    root_reader = made.get_json()["token"]
    assert call(client, root_reader, "GET", "/audit").status_code == 403
    listed = call(client, tokens["mia"], "GET", "/users/me/tokens").get_json()
    assert {t["name"] for t in listed} >= {"t", "reader"}
    assert all("token" not in t for t in listed)


def test_a_token_limited_to_one_workspace(app, tokens, shared_ws):
    client = app.test_client()
    other = call(
        client, tokens["mia"], "POST", "/workspaces", json={"name": "other", "template": "base"}
    )
    other_id = other.get_json()["id"]
    made = call(
        client,
        tokens["mia"],
        "POST",
        "/users/me/tokens",
        json={"name": "agent", "workspace": shared_ws, "lifetime": "4h"},
    )
    assert made.status_code == 201 and made.get_json()["workspace_id"] == shared_ws
    agent = made.get_json()["token"]
    assert call(client, agent, "GET", f"/workspaces/{shared_ws}").status_code == 200
    assert (
        call(client, agent, "POST", f"/workspaces/{shared_ws}/activity", json={}).status_code == 200
    )
    refused = call(client, agent, "GET", f"/workspaces/{other_id}")
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "token_limited"
    assert [w["id"] for w in call(client, agent, "GET", "/workspaces").get_json()] == [shared_ws]
    for method, path in (
        ("POST", "/workspaces"),
        ("GET", "/users/me/keys"),
        ("POST", "/users/me/tokens"),
    ):
        refused = call(client, agent, method, path, json={"name": "x", "template": "base"})
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "token_limited"
    # Only for a workspace one may use: olga cannot make a token for mia's.
    refused = call(
        client,
        tokens["olga"],
        "POST",
        "/users/me/tokens",
        json={"workspace": shared_ws, "lifetime": "1h"},
    )
    assert refused.status_code == 404


def _actions(**filters) -> list[tuple[str, str, str]]:
    with database.connection_context():
        return [(r.action, r.actor, r.outcome) for r in audit.search(**filters)]


def test_the_audit_trail_of_each_kind_of_event(app, tokens, shared_ws):
    client = app.test_client()
    # Logins: a failure, then a success, a logout.
    assert login(client, "mia", "wrong-password").status_code == 401
    login(client, "mia", "mia-password")
    form_post(client, "/logout", "/account/")
    logins = _actions(action="log")
    assert ("login", "mia", "failure") in logins and ("login", "mia", "success") in logins
    assert ("logout", "mia", "success") in logins
    with database.connection_context():
        failure = audit.search(action="login", actor="mia").where(AuditEvent.outcome == "failure")
        assert failure.first().source_ip == "127.0.0.1"
    # Tokens: created (fixture), used, revoked, and a use after revocation.
    assert ("token.create", "mia", "success") in _actions(action="token.create")
    assert ("token.use", "mia", "success") in _actions(action="token.use")
    made = call(
        client, tokens["mia"], "POST", "/users/me/tokens", json={"lifetime": "1h"}
    ).get_json()
    call(client, tokens["mia"], "DELETE", f"/users/me/tokens/{made['id']}")
    call(client, made["token"], "GET", "/me")
    assert ("token.revoke", "mia", "success") in _actions(action="token.revoke")
    assert ("token.use", "mia", "denied") in _actions(action="token.use")
    # Workspace transitions with their cause, sharing, templates, admin actions.
    call(client, tokens["sam"], "POST", f"/workspaces/{shared_ws}/start")
    trail = _actions(workspace="mia.code")
    assert ("workspace.create.request", "mia", "success") in trail
    assert ("workspace.start.request", "sam", "success") in trail
    assert ("share.add", "mia", "success") in trail
    with database.connection_context():
        start = audit.search(action="workspace.start.request").first()
        assert audit.to_dict(start)["detail"]["cause"] == "api"
    call(client, tokens["root"], "PATCH", "/templates/base", json={"enabled": True})
    call(client, tokens["root"], "PATCH", "/users/olga", json={"role": "auditor"})
    call(client, tokens["root"], "PUT", "/groups/team/members/olga")
    admin = _actions(actor="root")
    for action in ("template.update", "user.role", "group.member.add"):
        assert (action, "root", "success") in admin
    with database.connection_context():
        role = audit.to_dict(audit.search(action="user.role").first())
        assert role["detail"]["before"] == "member" and role["detail"]["after"] == "auditor"
        assert role["target"] == "user:olga"
        assert audit.verify().ok
    # The auditor's page filters, and verifies.
    client = app.test_client()
    login(client, "aud", "aud-password")
    page = client.get("/admin/audit?user=root&action=user.&verify=1").get_data(as_text=True)
    assert 'data-action="user.role"' in page and 'data-action="share.add"' not in page
    assert "records verified" in page
    export = call(client, tokens["aud"], "GET", "/audit?format=jsonl")
    assert export.status_code == 200 and export.text.count("\n") >= 10
    assert call(client, tokens["aud"], "GET", "/audit?since=yesterday").status_code == 422


def test_roles_are_changed_safely(app, tokens):
    client = app.test_client()
    last = call(client, tokens["root"], "PATCH", "/users/root", json={"role": "member"})
    assert last.status_code == 422 and "last active admin" in last.get_json()["error"]["message"]
    bad = call(client, tokens["root"], "PATCH", "/users/olga", json={"role": "owner"})
    assert (
        bad.status_code == 422
        and "role 'owner' does not exist" in bad.get_json()["error"]["message"]
    )
    me = call(client, tokens["sam"], "GET", "/me").get_json()
    assert me["role"] == "member" and me["groups"] == ["team"]


def test_quotas_refuse_with_the_quota_and_the_usage(app, tokens):
    client = app.test_client()

    def create(who, name, **parameters):
        body = {"name": name, "template": "base", "parameters": parameters or None}
        return call(client, tokens[who], "POST", "/workspaces", json=body)

    def refusal(response) -> str:
        assert response.status_code == 403, response.get_json()
        assert response.get_json()["error"]["code"] == "quota_exceeded"
        return response.get_json()["error"]["message"]

    # A person's number of workspaces.
    put = call(client, tokens["root"], "PUT", "/quotas/users/mia", json={"max_workspaces": 2})
    assert put.status_code == 200 and put.get_json()["limits"]["max_workspaces"] == 2
    assert create("mia", "one").status_code == 201 and create("mia", "two").status_code == 201
    message = refusal(create("mia", "three"))
    assert message.startswith("quota exceeded: user mia may have 2 workspaces and has 2")
    # A group's running workspaces count every member's.
    call(client, tokens["root"], "PUT", "/groups/team/members/olga")
    call(client, tokens["root"], "PUT", "/quotas/groups/team", json={"max_running": 1})
    assert create("sam", "first").status_code == 201
    message = refusal(create("olga", "second"))
    assert "group team may have 1 running workspaces and has 1" in message
    # CPUs and memory of running workspaces.
    call(
        client,
        tokens["root"],
        "PUT",
        "/quotas/groups/team",
        json={"max_cpu": 3, "max_memory_mb": 6000},
    )
    assert (
        "group team may have 3 CPUs in running workspaces and has 2 (this one would make 4)"
        in refusal(create("olga", "big", cpu=2))
    )
    assert "may have 6000 MB of memory in running workspaces and has 4096" in refusal(
        create("olga", "wide", cpu=1, memory=4096)
    )
    assert create("olga", "small", cpu=1, memory=1024).status_code == 201
    # Starting a stopped workspace is checked too; stopping makes room.
    with database.connection_context():
        Workspace.update(status="stopped").where(Workspace.name == "first").execute()
        first = Workspace.get(Workspace.name == "first").id
        database.execute_sql("UPDATE transitions SET status = 'succeeded'")
    call(client, tokens["root"], "PUT", "/quotas/groups/team", json={"max_running": 1})
    assert "group team may have 1 running workspaces and has 1" in refusal(
        call(client, tokens["sam"], "POST", f"/workspaces/{first}/start")
    )
    # Usage as its owner sees it; validation; only admins set quotas.
    mine = call(client, tokens["mia"], "GET", "/quotas/users/mia").get_json()
    assert mine["usage"]["workspaces"] == 2 and mine["limits"]["max_workspaces"] == 2
    assert call(client, tokens["mia"], "GET", "/quotas/users/olga").status_code == 403
    assert call(client, tokens["sam"], "GET", "/quotas/groups/team").status_code == 200
    bad = call(client, tokens["root"], "PUT", "/quotas/users/mia", json={"max_running": -1})
    assert bad.status_code == 422 and "max_running: must be a non-negative whole number" in bad.text
    bad = call(client, tokens["root"], "PUT", "/quotas/users/mia", json={"max_gpus": 1})
    assert bad.status_code == 422 and "unknown quota 'max_gpus'" in bad.text
    assert call(client, tokens["mia"], "PUT", "/quotas/users/mia", json={}).status_code == 403
    # Nothing half-made: refused creates left no workspace behind.
    with database.connection_context():
        assert (
            not Workspace.select()
            .where(Workspace.name.in_(["three", "second", "big", "wide"]))
            .exists()
        )
    assert ("quota.set", "root", "success") in _actions(action="quota.")
