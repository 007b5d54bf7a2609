"""A person in real headless Chromium, against a real `berth serve`."""

import pytest

from tests.services import ARTIFACTS, start_berth_serve

# A flashed message; an admin's page may also show a health banner (role="status").
FLASH = ".alert[role=alert]"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser") / "data"
    server = start_berth_serve(
        data, {"BERTH_LOGIN_LIMIT_ACCOUNT": "3 per minute", "BERTH_LOGIN_LIMIT_IP": "50 per minute"}
    )
    server.cli("admin", "create-user", "ada", "--admin", "--password-stdin", input="ada-password\n")
    server.cli("admin", "create-user", "ben", "--password-stdin", input="ben-password\n")
    yield server
    assert server.stop() == 0


def log_in(page, server, username, password):
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_login_dashboard_and_logout(server, page):
    log_in(page, server, "ada", "ada-password")
    page.wait_for_url(server.url + "/")
    assert page.get_by_test_id("current-user").inner_text().startswith("ada")
    assert page.get_by_test_id("workspaces-empty").is_visible()
    nav = page.locator("nav.mainnav a").all_inner_texts()
    assert nav == ["Workspaces", "Templates", "Admin", "Account"]
    # A real stylesheet is applied, not browser defaults.
    assert page.eval_on_selector("header.topbar", "e => getComputedStyle(e).display") == "flex"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.click("text=Log out")
    page.wait_for_url(server.url + "/login")
    page.goto(server.url + "/account/")
    assert page.url.startswith(server.url + "/login?next=/account/")


def test_wrong_password_is_refused_with_a_message(server, page):
    log_in(page, server, "ben", "not-his-password")
    assert page.get_by_test_id("login-error").inner_text() == "Wrong username or password."


def test_disabled_user_is_refused_and_re_enabled_by_the_admin(server, page, browser):
    log_in(page, server, "ada", "ada-password")
    page.goto(server.url + "/admin/people")
    row = page.locator("tr[data-user=ben]")
    row.locator("text=Disable").click()
    assert "ben is disabled" in page.locator(FLASH).inner_text()

    other = browser.new_context().new_page()
    log_in(other, server, "ben", "ben-password")
    assert "This account is disabled" in other.get_by_test_id("login-error").inner_text()

    page.locator("tr[data-user=ben]").locator("text=Enable").click()
    assert "ben is enabled again" in page.locator(FLASH).inner_text()
    log_in(other, server, "ben", "ben-password")
    other.wait_for_url(server.url + "/")
    other.goto(server.url + "/admin/")
    reason = other.get_by_test_id("error-reason").inner_text()
    assert "This page is for admins, template-admins or auditors; your role is member." in reason
    other.context.close()


def test_too_many_attempts_are_refused(server, page):
    server.cli("admin", "create-user", "cy", "--password-stdin", input="cy-password\n")
    for _ in range(3):
        log_in(page, server, "cy", "guess-guess")
        assert "Wrong username or password." in page.get_by_test_id("login-error").inner_text()
    log_in(page, server, "cy", "cy-password")
    assert "Too many failed login attempts for this account" in (
        page.get_by_test_id("login-error").inner_text()
    )


def test_form_without_csrf_token_is_rejected(server, page):
    page.goto(server.url + "/login")
    page.eval_on_selector("input[name=csrf_token]", "e => e.remove()")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "ada-password")
    page.click("button[type=submit]")
    assert "security token is missing" in page.get_by_test_id("error-reason").inner_text()
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")


def test_token_created_in_the_browser_works_on_the_api(server, page):
    log_in(page, server, "ada", "ada-password")
    page.goto(server.url + "/account/")
    page.fill("input[name=name]", "from-browser")
    page.click("text=Create token")
    token = page.get_by_test_id("new-token").inner_text()
    answer = page.request.get(
        server.url + "/api/v2/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 200 and answer.json()["username"] == "ada"
    page.locator("[data-testid=tokens-table] tr", has_text="from-browser").locator(
        "text=Revoke"
    ).click()
    answer = page.request.get(
        server.url + "/api/v2/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status == 401 and answer.json()["error"]["code"] == "token_revoked"


def test_dotfiles_are_set_refused_with_the_reason_and_removed_on_the_account_page(server, page):
    log_in(page, server, "ben", "ben-password")
    page.wait_for_url(server.url + "/")
    page.goto(server.url + "/account/")
    card = page.get_by_test_id("dotfiles-card")
    card.locator("input[name=url]").fill("https://ben:secret@git.example.org/dots")
    card.locator("button:has-text('Save')").click()
    refused = page.locator(FLASH).inner_text()
    assert "Dotfiles not set" in refused and "may not carry credentials" in refused
    card = page.get_by_test_id("dotfiles-card")
    assert card.locator("input[name=url]").input_value() == ""
    card.locator("input[name=url]").fill("https://git.example.org/ben/dots")
    card.locator("button:has-text('Save')").click()
    assert (
        "get the dotfiles of https://git.example.org/ben/dots" in page.locator(FLASH).inner_text()
    )
    card = page.get_by_test_id("dotfiles-card")
    assert card.locator("input[name=url]").input_value() == "https://git.example.org/ben/dots"
    card.locator("button:has-text('Remove')").click()
    assert "get no dotfiles" in page.locator(FLASH).inner_text()
    assert page.get_by_test_id("dotfiles-card").locator("button:has-text('Remove')").count() == 0
