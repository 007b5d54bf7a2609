"""Finding 12 (sessions, headers, lockouts) and finding 4's second half (who grants
approvals), in-process: a copied session cookie, or the IDE's, stops working at logout
and at a password change; pages cannot be framed or sniffed; a stranger guessing an
account's password slows guessing down without locking its owner out; only admins grant
approvals that amount to root on the host."""

from __future__ import annotations

import pytest

from app.db import database
from app.http.extensions import limiter
from app.models import Template, Workspace
from tests.security.conftest import call
from tests.test_web import csrf_of, login


def _session_cookie(client) -> str:
    cookie = client.get_cookie("berth_session")
    assert cookie is not None
    return cookie.value


def _copy_with(app, cookie: str):
    thief = app.test_client()
    thief.set_cookie("berth_session", cookie)
    return thief


def test_a_copied_session_dies_at_logout(app):
    client = app.test_client()
    assert login(client, "mia", "mia-password").status_code == 302
    thief = _copy_with(app, _session_cookie(client))
    assert thief.get("/account/").status_code == 200  # the copy works while signed in
    token = csrf_of(client.get("/account/").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": token})
    assert thief.get("/account/").status_code == 302  # to the login page
    # Signing in again gives a working session; the old copy stays dead.
    again = app.test_client()
    assert login(again, "mia", "mia-password").status_code == 302
    assert again.get("/account/").status_code == 200
    assert thief.get("/account/").status_code == 302


def test_a_copied_session_dies_at_a_password_change_and_the_changer_stays_in(app):
    client = app.test_client()
    login(client, "mia", "mia-password")
    thief = _copy_with(app, _session_cookie(client))
    token = csrf_of(client.get("/account/").get_data(as_text=True))
    changed = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "mia-password",
            "new_password": "mia-new-password-1",
            "confirm_password": "mia-new-password-1",
        },
        follow_redirects=True,
    )
    assert "Your password was changed." in changed.get_data(as_text=True)
    assert client.get("/account/").status_code == 200
    assert thief.get("/account/").status_code == 302


def ide_headers(app, client, ws_id: int) -> dict:
    """What Caddy sends forward_auth for a request to the IDE of ``ws_id``, once the
    person signed in on ``client`` opened it from the dashboard (its cookie included)."""
    from app.workspaces import apps

    with database.connection_context():
        ide_url = apps.urls(app.config["BERTH_SETTINGS"], Workspace.get_by_id(ws_id))["ide"]
    opened = client.get("/apps/open", query_string={"to": ide_url})
    assert opened.status_code == 302
    host, _, uri = opened.headers["Location"].split("://", 1)[1].partition("/")
    forwarded = {"X-Forwarded-Host": host, "X-Forwarded-Proto": "http"}
    traded = client.get("/_berth/authorize", headers={**forwarded, "X-Forwarded-Uri": "/" + uri})
    assert traded.status_code == 302
    cookie = traded.headers["Set-Cookie"].split(";")[0]
    return {**forwarded, "X-Forwarded-Uri": "/", "Cookie": cookie, "Sec-Fetch-Mode": "cors"}


def test_the_ide_cookie_dies_at_logout(app, shared_ws, monkeypatch):
    from app.web import apps as web_apps

    with database.connection_context():  # started, as the worker records it
        Workspace.update(status="running", container_id="c" * 64, address="10.231.0.2").where(
            Workspace.id == shared_ws
        ).execute()
    client = app.test_client()
    login(client, "mia", "mia-password")
    ide = ide_headers(app, client, shared_ws)
    monkeypatch.setattr(web_apps, "GRANT_SECONDS", 0.0)
    caddy = app.test_client(use_cookies=False)  # Caddy passes the browser's Cookie header on
    granted = caddy.get("/_berth/authorize", headers=ide)
    assert (
        granted.status_code == 200 and "code-server-session=" in granted.headers["X-Berth-Cookie"]
    )
    token = csrf_of(client.get("/account/").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": token})
    refused = caddy.get("/_berth/authorize", headers=ide)
    assert refused.status_code == 401


def test_pages_and_the_api_cannot_be_framed_or_sniffed(app, tokens):
    client = app.test_client()
    for response in (
        client.get("/login"),
        call(client, tokens["mia"], "GET", "/me"),
        client.get("/no-such-page"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_guessing_an_accounts_password_does_not_lock_its_owner_out(app):
    limiter.reset()
    owner = app.test_client()
    assert login(owner, "mia", "mia-password").status_code == 302  # a known browser now
    token = csrf_of(owner.get("/account/").get_data(as_text=True))
    owner.post("/logout", data={"csrf_token": token})
    stranger = app.test_client()
    statuses = [login(stranger, "mia", f"guess-{n}").status_code for n in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429  # guessing is slowed down
    # ...for the stranger, even with the right password, and for any new browser...
    assert login(stranger, "mia", "mia-password").status_code == 429
    assert login(app.test_client(), "mia", "mia-password").status_code == 429
    # ...but not for the browser that signed in before.
    assert login(owner, "mia", "mia-password").status_code == 302
    limiter.reset()


def test_a_forged_device_cookie_counts_for_nothing(app):
    limiter.reset()
    stranger = app.test_client()
    stranger.set_cookie("berth_device", "eyJ1IjoibWlhIiwiZCI6Ingi.forged.signature", path="/login")
    statuses = [login(stranger, "mia", f"guess-{n}").status_code for n in range(8)]
    assert statuses[-1] == 429
    limiter.reset()


@pytest.mark.parametrize(
    "grant",
    [
        {"privileged": True},
        {"docker_socket": True},
        {"host_mounts": True},
        {"host_namespaces": True},
        {"devices": True},
        {"capabilities": ["SYS_ADMIN"]},
        {"capabilities": ["cap_sys_module"]},
        {"security_opts": ["seccomp=unconfined"]},
    ],
)
def test_only_admins_grant_approvals_that_are_root_on_the_host(app, tokens, grant):
    client = app.test_client()
    refused = call(client, tokens["tina"], "PATCH", "/templates/base", json={"approvals": grant})
    assert refused.status_code == 403, refused.get_json()
    assert refused.get_json()["error"]["code"] == "approval_needs_admin"
    assert "only admins may approve" in refused.get_json()["error"]["message"]
    with database.connection_context():
        assert Template.get(Template.name == "base").approvals == "{}"
    allowed = call(client, tokens["root"], "PATCH", "/templates/base", json={"approvals": grant})
    assert allowed.status_code == 200
    # A template admin may still edit the template that has it, and grant contained ones.
    kept = call(
        client,
        tokens["tina"],
        "PATCH",
        "/templates/base",
        json={
            "approvals": {**grant, "capabilities": [*grant.get("capabilities", []), "NET_ADMIN"]}
        },
    )
    assert kept.status_code == 200, kept.get_json()


def test_only_admins_allow_private_egress_destinations(app, tokens):
    client = app.test_client()
    body = {"limits": {"egress_private": ["127.0.0.0/8"]}}
    refused = call(client, tokens["tina"], "PATCH", "/templates/agent-sandbox", json=body)
    assert refused.status_code == 403
    assert (
        call(client, tokens["root"], "PATCH", "/templates/agent-sandbox", json=body).status_code
        == 200
    )
    bad = call(
        client,
        tokens["root"],
        "PATCH",
        "/templates/agent-sandbox",
        json={"limits": {"egress_private": ["nope"]}},
    )
    assert bad.status_code == 422 and "egress_private" in bad.get_json()["error"]["message"]


def test_the_account_scope_is_kept_by_tokens_that_had_every_scope(tmp_path):
    """Migration 15: a token made with every scope that existed keeps managing keys."""
    from app import migrations
    from app.config import Settings
    from app.db import open_database

    settings = Settings.load({"data_dir": str(tmp_path / "data")}, environ={})
    settings.ensure_data_dir()
    db = open_database(settings)
    with database.connection_context():
        migrations.upgrade(db, target=14)
        db.execute_sql(
            "INSERT INTO users (username, role, created_at, password_change_required) "
            "VALUES ('old', 'member', '2026-01-01', 0)"
        )
        for name, scopes in (
            ("full", "workspaces:read workspaces:write workspaces:exec admin"),
            ("narrow", "workspaces:read"),
        ):
            db.execute_sql(
                "INSERT INTO api_tokens (user_id, name, prefix, token_hash, created_at, scopes) "
                "VALUES (1, ?, 'berth_', ?, '2026-01-01', ?)",
                (name, name, scopes),
            )
        migrations.upgrade(db)
        found = dict(db.execute_sql("SELECT name, scopes FROM api_tokens").fetchall())
    assert "account" in found.get("full", "").split(), found
    assert found["narrow"] == "workspaces:read"
