"""The web app in-process (Flask's test client on SQLite): pages, forms, CSRF, limits, API."""

import logging
import re
from datetime import timedelta

import pytest

from app import accounts, audit, migrations
from app.config import Settings
from app.db import database
from app.factory import create_app
from app.http.extensions import limiter
from app.models import ApiToken, User, utcnow


@pytest.fixture
def app(tmp_path):
    settings = Settings.load(
        {
            "data_dir": str(tmp_path / "data"),
            "login_limit_account": "3 per minute",
            "login_limit_ip": "6 per minute",
        },
        environ={},
    )
    flask_app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        accounts.create_user("root-admin", "admin-password", "admin")
        accounts.create_user("mia", "member-password")
    limiter.reset()
    yield flask_app


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_of(page_html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_html).group(1)


def login(client, username, password):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def form_post(client, url, page="/", **fields):
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(url, data={**fields, "csrf_token": token}, follow_redirects=True)


def test_pages_need_a_login(client):
    response = client.get("/account/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/account/")


def test_login_and_logout(client):
    response = login(client, "mia", "member-password")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    home = client.get("/").get_data(as_text=True)
    assert "No workspaces yet" in home and "mia" in home
    assert ">Admin<" not in home  # members do not see the admin entry
    response = form_post(client, "/logout")
    assert "Log in to Berth" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_session_cookie_is_secure_over_tls(client):
    token = csrf_of(client.get("/login", base_url="https://berth.test").get_data(as_text=True))
    response = client.post(
        "/login",
        base_url="https://berth.test",
        data={"username": "mia", "password": "member-password", "csrf_token": token},
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_next_only_redirects_inside_the_site(client):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={
            "username": "mia",
            "password": "member-password",
            "csrf_token": token,
            "next": "https://evil.test/",
        },
    )
    assert response.headers["Location"] == "/"


def test_refusals_say_why(client):
    response = login(client, "mia", "nope-nope")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    with database.connection_context():
        accounts.set_disabled(User.get(User.username == "mia"), True)
    response = login(client, "mia", "member-password")
    assert "This account is disabled" in response.get_data(as_text=True)


def test_form_without_csrf_token_is_rejected(client):
    response = client.post("/login", data={"username": "mia", "password": "member-password"})
    assert response.status_code == 400
    assert "security token is missing" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in


def test_failed_logins_are_limited_per_account(client):
    for _ in range(3):
        assert login(client, "mia", "wrong-password").status_code == 401
    response = login(client, "mia", "member-password")  # even the right password waits now
    assert response.status_code == 429
    assert "Too many failed login attempts for this account" in response.get_data(as_text=True)
    assert login(client, "root-admin", "admin-password").status_code == 302  # others unaffected


def test_failed_logins_are_limited_per_address(client):
    for name in ("u1", "u2", "u3", "u4", "u5", "u6"):
        assert login(client, name, "wrong-password").status_code == 401
    response = login(client, "mia", "member-password")
    assert response.status_code == 429
    assert "from your address" in response.get_data(as_text=True)


PEOPLE = "/admin/people"


def test_admin_manages_people(client):
    login(client, "mia", "member-password")
    assert client.get("/admin/").status_code == 403
    form_post(client, "/logout")
    login(client, "root-admin", "admin-password")
    page = client.get("/admin/people").get_data(as_text=True)
    assert "mia" in page and "root-admin" in page

    page = form_post(
        client,
        "/admin/users",
        "/admin/people",
        username="noah",
        password="noah-password",
        role="member",
    ).get_data(as_text=True)
    assert "User noah created." in page
    page = form_post(
        client,
        "/admin/users",
        "/admin/people",
        username="noah",
        password="noah-password",
        role="member",
    ).get_data(as_text=True)
    assert "already exists" in page
    page = form_post(
        client,
        "/admin/users",
        "/admin/people",
        username="Bad Name",
        password="x" * 9,
        role="member",
    ).get_data(as_text=True)
    assert "is not allowed" in page

    with database.connection_context():
        noah = User.get(User.username == "noah")
        me = User.get(User.username == "root-admin")
    page = form_post(client, f"/admin/users/{noah.id}/disable", PEOPLE).get_data(as_text=True)
    assert "noah is disabled" in page
    page = form_post(client, f"/admin/users/{me.id}/disable", PEOPLE).get_data(as_text=True)
    assert "cannot disable your own account" in page
    page = form_post(client, f"/admin/users/{noah.id}/enable", PEOPLE).get_data(as_text=True)
    assert "noah is enabled again" in page
    page = form_post(
        client, f"/admin/users/{noah.id}/password", PEOPLE, password="fresh-password"
    ).get_data(as_text=True)
    assert "password of noah was reset" in page
    assert (
        client.post("/admin/users/9999/enable", data={"csrf_token": csrf_of(page)}).status_code
        == 404
    )
    with database.connection_context():
        assert accounts.authenticate("noah", "fresh-password")


def test_account_tokens(client):
    login(client, "mia", "member-password")
    page = form_post(
        client,
        "/account/tokens",
        "/account/",
        name="ci",
        expires="7d",
        scopes=["workspaces:read", "workspaces:exec"],
    )
    html = page.get_data(as_text=True)
    plaintext = re.search(r'data-testid="new-token"[^>]*>(berth_[^<]+)<', html).group(1)
    assert client.get("/account/").get_data(as_text=True).count(plaintext) == 0  # shown once
    api = client.get("/api/v2/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert api.status_code == 200 and api.get_json()["username"] == "mia"
    assert api.get_json()["token"]["scopes"] == ["workspaces:read", "workspaces:exec"]
    none = form_post(client, "/account/tokens", "/account/", name="none", expires="7d")
    assert "give at least one scope" in none.get_data(as_text=True)
    with database.connection_context():
        token = ApiToken.get(ApiToken.name == "ci")
    html = form_post(client, f"/account/tokens/{token.id}/revoke", "/account/").get_data(
        as_text=True
    )
    assert "was revoked" in html and ">revoked<" in html
    api = client.get("/api/v2/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "token_revoked"
    bad = form_post(client, "/account/tokens", "/account/", name="x", expires="forever")
    assert "not one of the offered lifetimes" in bad.get_data(as_text=True)


def test_password_change(client):
    login(client, "mia", "member-password")
    html = form_post(
        client,
        "/account/password",
        "/account/",
        current_password="wrong",
        new_password="new-password",
        confirm_password="new-password",
    )
    assert "current password is not right" in html.get_data(as_text=True)
    html = form_post(
        client,
        "/account/password",
        "/account/",
        current_password="member-password",
        new_password="new-password",
        confirm_password="new-password",
    )
    assert "Your password was changed." in html.get_data(as_text=True)


def test_api_me_and_error_shapes(client):
    with database.connection_context():
        mia = User.get(User.username == "mia")
        _, good = accounts.create_token(mia, "good")
        expired_row, expired = accounts.create_token(mia, "expired", timedelta(hours=1))
        expired_row.expires_at = utcnow() - timedelta(seconds=1)
        expired_row.save()
        revoked_row, revoked = accounts.create_token(mia, "revoked")
        accounts.revoke_token(revoked_row)

    def me(header):
        headers = {"Authorization": header} if header is not None else {}
        return client.get("/api/v2/me", headers=headers)

    response = me(f"Bearer {good}")
    assert response.status_code == 200
    assert response.get_json()["username"] == "mia" and response.get_json()["role"] == "member"
    for header, code in [
        (f"Bearer {expired}", "token_expired"),
        (f"Bearer {revoked}", "token_revoked"),
        ("Bearer not-a-token", "malformed_token"),
        (f"Basic {good}", "malformed_token"),
        ("Bearer berth_" + "x" * 40, "invalid_token"),
        (None, "missing_token"),
    ]:
        response = me(header)
        assert response.status_code == 401, header
        body = response.get_json()
        assert body["error"]["code"] == code and body["error"]["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    missing = client.get("/api/v2/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong_method = client.post("/api/v2/me", headers={"Authorization": f"Bearer {good}"})
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]["code"] == "method_not_allowed"


def test_api_ignores_the_session_cookie(client):
    login(client, "mia", "member-password")
    assert client.get("/api/v2/me").status_code == 401


def test_error_pages_never_show_a_traceback(app, client):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = client.get("/boom")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in html and "secret internals" not in html
    assert "Traceback" not in html
    assert "There is nothing at this address." in client.get("/nope").get_data(as_text=True)


def test_a_one_time_password_must_be_replaced_before_anything_else(app, client):
    with database.connection_context():
        password = accounts.one_time_password()
        accounts.create_user("oona", password, one_time=True)
    assert login(client, "oona", password).status_code == 302
    for page in ("/", "/admin/", "/workspaces/new"):
        response = client.get(page)
        assert response.status_code == 302 and response.headers["Location"] == "/account/"
    assert client.get("/api/v2/me").status_code == 401  # the API never takes the session
    account = client.get("/account/").get_data(as_text=True)
    assert "Choose your password" in account and "API tokens" not in account
    changed = form_post(
        client,
        "/account/password",
        page="/account/",
        current_password=password,
        new_password="oona-chose-this",
        confirm_password="oona-chose-this",
    )
    assert "Your password was changed." in changed.get_data(as_text=True)
    assert client.get("/").status_code == 200
    with database.connection_context():
        assert not User.get(User.username == "oona").password_change_required


def test_healthz_and_the_tls_question(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    # Caddy asks before getting a certificate; no workspace, no certificate.
    assert client.get("/_berth/tls-ask?domain=ws--mia.localhost").status_code == 404
    assert client.get("/_berth/tls-ask?domain=example.org").status_code == 404


def test_the_dashboard_shows_the_first_runs_preparation_until_it_is_done(app):
    """What the worker makes on first use, step by step, for everyone signed in (their
    first workspace waits for it); each step's latest line (build output, errors) for
    admins only; gone once every step has succeeded."""
    from app.models import ScheduledJob
    from app.platform import PREPARATION, Progress

    member, admin = app.test_client(), app.test_client()
    login(member, "mia", "member-password")
    login(admin, "root-admin", "admin-password")
    page = member.get("/").get_data(as_text=True)  # the worker never ran: all waiting
    assert 'data-testid="preparation"' in page
    assert page.count('data-state="waiting"') == len(PREPARATION)
    with database.connection_context():
        ScheduledJob.create(
            name="base-image", schedule="at start", last_outcome="succeeded", runs=1
        )
        ScheduledJob.create(
            name="control-image",
            schedule="at start",
            last_outcome="failed",
            last_detail="building berth-control:1 failed: no network\nmore",
            runs=2,
            failures=2,
        )
        ScheduledJob.create(name="templates", schedule="at start", last_outcome="running")
        Progress("templates", logging.getLogger("test"))("python: Step 2/3 : RUN apt-get")
    for viewer, details in ((member, False), (admin, True)):
        page = viewer.get("/").get_data(as_text=True)
        assert '<li data-step="base-image" data-state="done">' in page
        assert '<li data-step="control-image" data-state="failed">' in page
        assert "trying again" in page
        assert '<li data-step="templates" data-state="in progress">' in page
        assert '<li data-step="tools" data-state="waiting">' in page
        assert ("building berth-control:1 failed: no network" in page) is details
        assert ("python: Step 2/3 : RUN apt-get" in page) is details
    with database.connection_context():
        # Done once each has succeeded, also while the next worker start runs it again.
        ScheduledJob.update(last_outcome="running").execute()
        ScheduledJob.create(name="tools", schedule="at start", last_outcome="succeeded", runs=1)
    assert 'data-testid="preparation"' in member.get("/").get_data(as_text=True)  # templates
    with database.connection_context():
        ScheduledJob.update(runs=3, failures=0).where(ScheduledJob.name != "tools").execute()
    assert 'data-testid="preparation"' not in member.get("/").get_data(as_text=True)


def test_admins_see_when_berth_itself_needs_attention(app):
    """No worker heartbeat and a failed scheduled job: a banner for admins on every page,
    nothing for members."""
    from app.models import ScheduledJob

    with database.connection_context():
        ScheduledJob.create(
            name="lifecycle", schedule="every 30s", last_outcome="failed", last_detail="boom\nmore"
        )
    admin = app.test_client()
    login(admin, "root-admin", "admin-password")
    page = admin.get("/").get_data(as_text=True)
    assert 'data-testid="platform-health"' in page
    assert "The worker is not running" in page and "lifecycle failed its last run: boom" in page
    member = app.test_client()
    login(member, "mia", "member-password")
    assert 'data-testid="platform-health"' not in member.get("/").get_data(as_text=True)


def test_the_admin_area_is_pages_with_search_and_paging(client):
    with database.connection_context():
        for n in range(60):
            accounts.create_user(f"user-{n:02d}", "long-enough-password")
        accounts.create_user("tia", "long-enough-password", "template-admin")
    login(client, "root-admin", "admin-password")
    overview = client.get("/admin/").get_data(as_text=True)
    for card in ("people", "groups", "workspaces", "operations", "templates", "costs"):
        assert f'data-card="{card}"' in overview, card
    assert "No template has prices yet" in overview  # why costs show 0
    nav = overview.split('class="subnav"')[1].split("</nav>")[0]
    assert all(f'href="/admin/{page}"' in nav for page in ("people", "templates", "audit"))
    first = client.get("/admin/people").get_data(as_text=True)
    assert "63 people" in first and "Page 1 of 2" in first and 'rel="next"' in first
    assert first.count("<tr data-user=") == 50
    second = client.get("/admin/people?page=2").get_data(as_text=True)
    assert second.count("<tr data-user=") == 13 and 'rel="prev"' in second
    found = client.get("/admin/people?q=user-07").get_data(as_text=True)
    assert 'data-user="user-07"' in found and found.count("<tr data-user=") == 1
    assert "Page 1 of 1" not in found  # one page needs no pager
    assert client.get("/admin/people?page=junk").status_code == 200
    with database.connection_context():
        for n in range(60):
            audit.record("test.paging", actor="root-admin", target=f"n:{n}")
    audit_page = client.get("/admin/audit?action=test.").get_data(as_text=True)
    assert "60 records" in audit_page and "Page 1 of 2" in audit_page
    assert 'href="/admin/audit?action=test.&amp;page=2"' in audit_page
    costs = client.get("/admin/costs").get_data(as_text=True)
    assert 'data-testid="budget-hint"' in costs and 'data-testid="prices-hint"' in costs
    # Only the page's own filters travel to the other pages' links.
    odd = client.get("/admin/people?endpoint=1&_external=1&_anchor=x&_method=DELETE&q=user")
    assert odd.status_code == 200
    links = odd.get_data(as_text=True)
    assert 'href="/admin/people?q=user&amp;page=2"' in links and "_external" not in links
    # A template-admin's admin area is the templates; the rest is refused.
    form_post(client, "/logout")
    login(client, "tia", "long-enough-password")
    mine = client.get("/admin/").get_data(as_text=True)
    assert 'data-card="templates"' in mine and 'data-card="people"' not in mine
    nav = mine.split('class="subnav"')[1].split("</nav>")[0]
    assert 'href="/admin/people"' not in nav and 'href="/admin/templates"' in nav
    assert client.get("/admin/people").status_code == 403
    assert client.get("/admin/templates").status_code == 200


def test_a_refused_create_marks_the_field_it_is_about(client):
    login(client, "mia", "member-password")
    token = csrf_of(client.get("/workspaces/new").get_data(as_text=True))
    answer = client.post(
        "/workspaces/new", data={"csrf_token": token, "name": "Bad Name", "template": "base"}
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "see the marked field" in page
    assert 'data-testid="name-error"' in page and 'aria-describedby="name-error"' in page
    assert 'value="Bad Name"' in page  # what was typed stays
    answer = client.post(
        "/workspaces/new", data={"csrf_token": token, "name": "ok-name", "cpu": "lots"}
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and "&#39;lots&#39; is not a number" in page
    assert 'aria-describedby="cpu-error"' in page
