"""Single sign-on end to end: headless Chromium, a real ``berth serve`` behind Caddy, and a
certified OpenID provider (npm oidc-provider) on loopback, started here."""

from __future__ import annotations

import json
import subprocess

import pytest

from app.config import ConfigError, Settings
from tests import reference, services

OIDC_PROVIDER = "oidc-provider@9.13.3"
ACCOUNTS = {
    # Provisioned; its groups make it an admin and put it in the Berth group "team".
    "alice": {
        "email": "alice@corp.test",
        "email_verified": True,
        "preferred_username": "alice",
        "groups": ["berth-admins", "team", "unknown-to-berth"],
    },
    "carol": {"email": "carol@corp.test", "email_verified": True, "groups": ["auditors"]},
    # Linked by verified email to the account an admin made, though the domain is not allowed.
    "mia-at-idp": {"email": "mia@partner.test", "email_verified": True, "groups": []},
    "eve": {"email": "eve@evil.test", "email_verified": True, "groups": []},
    # An unverified address of an allowed domain (and root's): neither links nor provisions.
    "mallory": {"email": "root@corp.test", "email_verified": False, "groups": []},
}


@pytest.fixture(scope="module")
def idp(tmp_path_factory, docker_client):
    root = tmp_path_factory.mktemp("sso")
    port = services.free_port()
    issuer = f"http://127.0.0.1:{port}"
    server = services.start_berth_serve(
        root / "data",
        {
            "BERTH_OIDC_ISSUER": issuer,
            "BERTH_OIDC_CLIENT_ID": "berth-test",
            "BERTH_OIDC_CLIENT_SECRET": "berth-test-secret-0123456789",
            "BERTH_OIDC_SCOPES": "openid email profile groups",
            "BERTH_OIDC_NAME": "Corp SSO",
            "BERTH_SSO_ALLOWED_DOMAINS": "corp.test",
            "BERTH_SSO_ROLE_MAP": "berth-admins=admin,auditors=auditor",
        },
    )
    server.cli("admin", "create-user", "root", "--admin", "--email", "root@corp.test",
               "--password-stdin", input="root-password\n")  # fmt: skip
    server.cli("admin", "create-user", "mia", "--email", "mia@partner.test",
               "--password-stdin", input="mia-password\n")  # fmt: skip
    server.cli("group", "create", "team")
    config = root / "idp.json"
    config.write_text(
        json.dumps(
            {
                "issuer": issuer,
                "port": port,
                "client": {
                    "client_id": "berth-test",
                    "client_secret": "berth-test-secret-0123456789",
                    "redirect_uris": [server.url + "/login/sso/oidc/callback"],
                },
                "accounts": ACCOUNTS,
            }
        )
    )
    entry = reference.npm_package(OIDC_PROVIDER, "oidc-provider/lib/index.js")
    log = (root / "idp.log").open("w")
    provider = subprocess.Popen(
        [reference.ensure_node(22), "tests/oidc/provider.mjs", str(entry), str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    services.wait_until(
        lambda: services.answers(issuer + "/.well-known/openid-configuration"),
        timeout=30,
        what="the OpenID provider",
    )
    server.idp_log = root / "idp.log"
    yield server
    provider.terminate()
    provider.wait(timeout=10)
    server.stop()


def _sign_in(browser, server, login: str):
    """Through Berth's button and the provider's own login and consent pages."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    page.goto(server.url + "/login")
    page.click("[data-testid=sso-oidc]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: the provider's development login")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if page.locator("button:has-text('Continue')").count():
        page.click("button:has-text('Continue')")  # the consent page
    page.wait_for_url(server.url + "/**")
    return context, page


def _users(server) -> dict[str, str]:
    lines = server.cli("admin", "list-users").stdout.splitlines()
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines}


def test_first_sign_in_provisions_and_maps_groups_to_roles(browser, idp):
    context, page = _sign_in(browser, idp, "alice")
    assert page.url == idp.url + "/"
    chip = page.locator("[data-testid=current-user]").inner_text()
    assert "alice" in chip and "admin" in chip
    assert _users(idp)["alice"] == "admin"
    assert "alice" in idp.cli("group", "list").stdout.split("team\t")[1]
    page.goto(idp.url + "/admin/people")
    assert page.locator("tr[data-user=alice]").inner_text().count("alice@corp.test") == 1
    # Logout ends the Berth session.
    page.click("form[action='/logout'] button")
    page.goto(idp.url + "/")
    assert "/login" in page.url
    context.close()

    context, page = _sign_in(browser, idp, "carol")
    assert "auditor" in page.locator("[data-testid=current-user]").inner_text()
    page.goto(idp.url + "/admin/")
    assert page.locator("nav.subnav a:has-text('Audit')").count() == 1
    assert page.locator("nav.subnav a:has-text('Templates')").count() == 0
    context.close()


def test_linking_by_verified_email_and_refusals(browser, idp):
    context, page = _sign_in(browser, idp, "mia-at-idp")
    assert "mia" in page.locator("[data-testid=current-user]").inner_text()
    assert _users(idp)["mia"] == "member" and "mia-2" not in _users(idp)
    context.close()

    context, page = _sign_in(browser, idp, "eve")
    error = page.locator("[data-testid=login-error]").inner_text()
    assert "the email domain evil.test is not allowed to sign in here (allowed: corp.test)" in error
    context.close()

    context, page = _sign_in(browser, idp, "mallory")
    error = page.locator("[data-testid=login-error]").inner_text()
    assert "your email root@corp.test is not verified" in error
    context.close()
    users = _users(idp)
    assert "eve" not in users and "mallory" not in users and users["root"] == "admin"

    records = [json.loads(line) for line in idp.cli("audit", "export").stdout.splitlines()]
    logins = [
        (r["actor"], r["outcome"], r["detail"].get("method"))
        for r in records
        if r["action"] == "login"
    ]
    assert ("alice", "success", "oidc") in logins
    assert ("eve@evil.test", "failure", "oidc") in logins
    assert ("root@corp.test", "failure", "oidc") in logins
    kinds = {(r["action"], r["target"]) for r in records}
    assert ("user.create", "user:alice") in kinds and ("user.link", "user:mia") in kinds
    assert ("user.role", "user:alice") in kinds and ("user.groups", "user:alice") in kinds
    assert idp.cli("audit", "verify").returncode == 0


def test_password_login_can_be_turned_off(tmp_path):
    from app import migrations
    from app.db import database
    from app.factory import create_app

    settings = Settings.load(
        {
            "data_dir": str(tmp_path / "data"),
            "oidc_issuer": "http://127.0.0.1:9/",
            "oidc_client_id": "x",
            "password_login": "false",
        },
        environ={},
    )
    app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with single sign-on" in page and 'name="password"' not in page
    app.config["WTF_CSRF_ENABLED"] = False  # the page has no form to take a token from
    refused = client.post("/login", data={"username": "a", "password": "b"})
    assert refused.status_code == 403
    assert "Password sign-in is turned off" in refused.get_data(as_text=True)
    with pytest.raises(ConfigError, match="cannot be off without single sign-on"):
        Settings.load({"data_dir": str(tmp_path / "d2"), "password_login": "no"}, environ={})
    with pytest.raises(ConfigError, match="BERTH_SSO_ROLE_MAP"):
        Settings.load({"data_dir": str(tmp_path / "d3"), "sso_role_map": "x=owner"}, environ={})
