"""Finding 9 (token scopes escalate) and invariant 5: every API route needs the scope
docs/security.md gives it, and no more; tokens limited to one workspace are refused
where the table says so. The table is checked against the routes both ways."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from app import accounts
from app.db import database
from app.models import TOKEN_SCOPES, AuditEvent, Workspace
from tests.security.conftest import call

TABLE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_ROW = re.compile(r"^\| `(/[^`]*)` \| (GET|POST|PUT|PATCH|DELETE) \| (\S+) \| (yes|no) \|")
# What each path parameter becomes in the requests below.
VALUES = {
    "name": "base",
    "user": "olga",
    "kind": "users",
    "key_id": "1",
    "credential_id": "1",
    "token_id": "1",
    "port": "8000",
    "recording_id": "1",
}


def documented() -> dict[tuple[str, str], tuple[str, bool]]:
    rows = {}
    for line in TABLE.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            path, method, scope, limited = match.groups()
            rows[(path, method)] = (scope, limited == "yes")
    return rows


def registered(flask_app) -> dict[tuple[str, str], tuple[str, bool]]:
    rows = {}
    for rule in flask_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v2/"):
            continue
        view = flask_app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v2") :])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            scope = getattr(view, "berth_scope", "public")
            limited = getattr(view, "berth_any_workspace", True)
            rows[(path, method)] = (scope or "any", limited)
    return rows


def _url(path: str, ws_id: int, **overrides) -> str:
    values = {**VALUES, "workspace_id": str(ws_id), **overrides}
    if path.startswith("/quotas/"):
        values.update(kind="user", name="mia")
    if path.startswith("/groups/"):
        values["name"] = "team"
    if path.startswith("/budgets/"):
        values["name"] = "team"
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _token(person: str, scopes, workspace: int | None = None) -> str:
    with database.connection_context():
        ws = Workspace.get_by_id(workspace) if workspace else None
        return accounts.create_token(
            accounts.find_user(person), "probe", timedelta(hours=1), scopes=scopes, workspace=ws
        )[1]


def test_the_table_in_docs_lists_every_route_with_its_scope(app):
    assert documented() == registered(app)


def _owner_of(path: str) -> str:
    """Who calls a route in these tests: admins for instance routes, mia for hers."""
    admin_only = ("/audit", "/users", "/groups", "/budgets", "/quotas", "/templates/")
    return "root" if path.startswith(admin_only) and not path.startswith("/users/me") else "mia"


def _code(answer) -> str | None:
    body = answer.get_json(silent=True)
    return (body.get("error") or {}).get("code") if isinstance(body, dict) else None


def test_each_route_refuses_a_token_without_its_scope_and_takes_one_with_it(app, shared_ws):
    client = app.test_client()
    wrong = []
    for (path, method), (scope, _) in sorted(documented().items()):
        if scope in ("any", "public"):
            continue
        person, url = _owner_of(path), _url(path, shared_ws)
        without = [s for s in TOKEN_SCOPES if s != scope]
        refused = call(client, _token(person, without), method, url, json={})
        if refused.status_code != 403 or _code(refused) != "insufficient_scope":
            wrong.append((method, path, "without", refused.status_code, _code(refused)))
        allowed = call(client, _token(person, [scope]), method, url, json={})
        if allowed.status_code >= 500 or _code(allowed) == "insufficient_scope":
            wrong.append((method, path, "with", allowed.status_code, _code(allowed)))
    assert wrong == []


def test_tokens_limited_to_a_workspace_reach_only_what_the_table_allows(app, shared_ws):
    client = app.test_client()
    wrong = []
    for (path, method), (scope, limited_ok) in sorted(documented().items()):
        if scope == "public":
            continue
        person = _owner_of(path)
        limited = _token(person, list(TOKEN_SCOPES), workspace=shared_ws)
        answer = call(client, limited, method, _url(path, shared_ws), json={})
        refused = answer.status_code == 403 and _code(answer) == "token_limited"
        if refused == limited_ok:
            wrong.append((method, path, answer.status_code, _code(answer)))
    assert wrong == []


def test_the_escalations_of_finding_9_fail_and_the_right_scope_works(app, tokens, shared_ws):
    client = app.test_client()
    writer = _token("mia", ["workspaces:read", "workspaces:write"])
    reader = _token("mia", ["workspaces:read"])
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvx1BfVr7yPy9+w3SO4bMkC3SVHlsaoE0D7SIJtAqF3 x"
    # A workspaces:write token adds no SSH key and writes no file (~/.bashrc)...
    assert (
        call(client, writer, "POST", "/users/me/keys", json={"public_key": key}).status_code == 403
    )
    wrote = call(client, writer, "PUT", f"/workspaces/{shared_ws}/files?path=.bashrc", data=b"x")
    assert wrote.status_code == 403 and "workspaces:exec" in wrote.get_json()["error"]["message"]
    # ...a read-only token reads no file, lists and revokes no token, mints none.
    read = call(client, reader, "GET", f"/workspaces/{shared_ws}/files?path=.bashrc")
    assert read.status_code == 403
    assert call(client, reader, "GET", "/users/me/tokens").status_code == 403
    assert call(client, reader, "DELETE", "/users/me/tokens/1").status_code == 403
    minted = call(client, reader, "POST", "/users/me/tokens", json={"scopes": ["workspaces:read"]})
    assert minted.status_code == 403
    # ...and a token limited to the workspace shares neither it nor its ports.
    agent = _token("mia", list(TOKEN_SCOPES), workspace=shared_ws)
    shared = call(client, agent, "PUT", f"/workspaces/{shared_ws}/shares/users/olga")
    assert shared.status_code == 403 and shared.get_json()["error"]["code"] == "token_limited"
    port = call(client, agent, "PUT", f"/workspaces/{shared_ws}/ports/8000", json={"shared": True})
    assert port.status_code == 403 and port.get_json()["error"]["code"] == "token_limited"
    longer = call(client, agent, "PUT", f"/workspaces/{shared_ws}/ttl", json={"ttl": "30d"})
    assert longer.status_code == 403
    # Each refusal is on record, with the rule that refused it.
    with database.connection_context():
        denied = AuditEvent.select().where(AuditEvent.action == "api.denied")
        codes = {json.loads(e.detail)["code"] for e in denied}
    assert {"insufficient_scope", "token_limited"} <= codes
    # The right scope does each of these.
    account = _token("mia", ["account"])
    added = call(client, account, "POST", "/users/me/keys", json={"public_key": key})
    assert added.status_code == 201, added.get_json()
    listed = call(client, account, "GET", "/users/me/tokens")
    assert listed.status_code == 200 and len(listed.get_json()) >= 1
    execer = _token("mia", ["workspaces:exec"])
    # Allowed by scope: refused only because no container runs here.
    wrote = call(client, execer, "PUT", f"/workspaces/{shared_ws}/files?path=x", data=b"x")
    assert wrote.status_code == 409 and wrote.get_json()["error"]["code"] == "not_running"
    own_port = call(client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/ports/8000", json={})
    assert own_port.status_code == 200


def test_a_token_never_mints_one_that_outlives_it(app):
    client = app.test_client()
    hour = _token("mia", ["workspaces:read", "account"])
    forever = call(client, hour, "POST", "/users/me/tokens", json={"scopes": ["workspaces:read"]})
    assert forever.status_code == 201
    assert forever.get_json()["expires_at"] is not None  # ends with its maker
    longer = call(
        client,
        hour,
        "POST",
        "/users/me/tokens",
        json={"scopes": ["workspaces:read"], "lifetime": "2h"},
    )
    assert longer.status_code == 403
    shorter = call(
        client,
        hour,
        "POST",
        "/users/me/tokens",
        json={"scopes": ["workspaces:read"], "lifetime": "30m"},
    )
    assert shorter.status_code == 201


def test_agent_sandboxes_are_not_shared_and_their_tokens_manage_nothing(app, tokens):
    client = app.test_client()
    made = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "sandbox", "template": "agent-sandbox"},
    ).get_json()
    refused = call(client, tokens["mia"], "PUT", f"/workspaces/{made['id']}/shares/users/sam")
    assert refused.status_code == 409 and "not shared" in refused.get_json()["error"]["message"]
    agent = _token("mia", list(TOKEN_SCOPES), workspace=made["id"])
    for method, suffix in (
        ("POST", "/stop"),
        ("POST", "/rebuild"),
        ("DELETE", ""),
        ("POST", "/backup"),
    ):
        answer = call(client, agent, method, f"/workspaces/{made['id']}{suffix}")
        assert answer.status_code == 403 and _code(answer) == "token_limited", suffix
    # Its own end, though, an agent reports.
    done = call(
        client, agent, "POST", f"/workspaces/{made['id']}/done", json={"outcome": "success"}
    )
    assert done.status_code in (202, 409), done.get_json()
