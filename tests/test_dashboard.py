"""The workspace dashboard in real Chromium: create, follow the log, act, admin view."""

from tests.services import ARTIFACTS


def log_in(page, url, username, password):
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_create_follow_and_stop_from_the_dashboard(stack, page):
    log_in(page, stack.url, "bob", "bob-password")
    page.click("text=New workspace")
    page.fill("input[name=name]", "clicked")
    page.select_option("select[name=template]", "base")
    page.fill("input[name=memory]", "1024")
    page.click("text=Create workspace")
    assert "Workspace clicked is being created." in page.locator(".alert[role=alert]").inner_text()
    status = page.get_by_test_id("ws-status")
    status.filter(has_text="running").wait_for(timeout=300_000)
    # The log followed the job live and ends with the outcome.
    page.get_by_test_id("log").filter(has_text="create done").wait_for(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workspace.png"), full_page=True)

    page.click("[data-action=stop]")
    page.get_by_test_id("ws-status").filter(has_text="stopped").wait_for(timeout=60_000)
    page.reload()
    history = page.get_by_test_id("history").inner_text()
    assert "running → stopping" in history and "stopping → stopped" in history

    # A stopped workspace offers no Stop; a stale form (another tab) gets the reason.
    assert page.locator("[data-action=stop]").count() == 0
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    stale = page.request.post(
        page.url + "/stop", form={"csrf_token": token}, headers={"Referer": page.url}
    )
    assert "it cannot stop now" in stale.text()

    page.goto(stack.url + "/")
    row = page.locator("tr[data-workspace=clicked]")
    assert "stopped" in row.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workspaces.png"), full_page=True)

    page.goto(stack.url + "/workspaces/new")
    page.fill("input[name=name]", "clicked")
    page.click("text=Create workspace")
    # Said by the field it is about, which is marked for assistive technology too.
    assert "see the marked field" in page.locator(".alert-error").inner_text()
    assert (
        "already have a workspace named 'clicked'" in page.get_by_test_id("name-error").inner_text()
    )
    assert page.locator("input[name=name]").get_attribute("aria-invalid") == "true"


def test_admin_sees_every_workspace_and_members_do_not(stack, page, browser):
    ann = stack.clients["ann"]
    ws = ann.create("annsown", template="base")
    log_in(page, stack.url, "boss", "boss-password")
    page.goto(stack.url + "/admin/workspaces")
    assert "annsown" in page.get_by_test_id("all-workspaces").inner_text()

    other = browser.new_context().new_page()
    log_in(other, stack.url, "bob", "bob-password")
    other.goto(f"{stack.url}/workspaces/{ws['id']}")
    assert f"There is no workspace {ws['id']}." in other.get_by_test_id("error-reason").inner_text()
    other.context.close()
    ann.wait(ws["id"], "running", "failed")
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_admin_edits_a_template(stack, page):
    log_in(page, stack.url, "boss", "boss-password")
    page.goto(stack.url + "/admin/templates")
    page.click("[aria-label='Edit node']")
    form = page.get_by_test_id("template-form")
    # A wrong field is refused with its name, and what was typed stays in the form.
    form.locator("input[name='price.per_hour']").fill("cheap")
    form.locator("input[name='param.cpu.max']").fill("3")
    form.locator("button[type=submit]").click()
    error = page.get_by_test_id("form-error").inner_text()
    assert "Per running hour: 'cheap' is not a number" in error
    form = page.get_by_test_id("template-form")
    assert form.locator("input[name='param.cpu.max']").input_value() == "3"
    form.locator("textarea[name=approvals]").fill("{not json")
    form.locator("input[name='price.per_hour']").fill("0.05")
    form.locator("button[type=submit]").click()
    assert "approvals is not valid JSON" in page.get_by_test_id("form-error").inner_text()
    # The same checks as the API's: a default outside its range.
    form = page.get_by_test_id("template-form")
    form.locator("textarea[name=approvals]").fill('{"capabilities": ["SYS_PTRACE"]}')
    form.locator("input[name='param.cpu.default']").fill("9")
    form.locator("button[type=submit]").click()
    assert "parameters.cpu" in page.get_by_test_id("form-error").inner_text()
    form = page.get_by_test_id("template-form")
    form.locator("input[name='param.cpu.default']").fill("2")
    form.locator("input[name='limit.dormant_after']").fill("14d")
    form.locator("button[type=submit]").click()
    assert "Template node saved." in page.locator(".alert-success").inner_text()
    node = [t for t in stack.clients["boss"].call("GET", "/templates", 200).json()]
    node = next(t for t in node if t["name"] == "node")
    assert node["parameters"]["cpu"]["max"] == 3 and node["limits"]["dormant_after"] == "14d"
    changed = page.get_by_test_id("template-history").locator("tr").nth(1).inner_text()
    assert "boss" in changed and "parameters" in changed and "pricing" in changed
    page.goto(stack.url + "/admin/templates")
    assert "per_hour=0.05" in page.locator("tr[data-template=node]").inner_text()


def test_admin_adds_templates_from_git_and_from_an_upload(stack, page, base_image, tmp_path):
    import io
    import json
    import tarfile

    from tests.dcfiles import git_repo

    config = json.dumps({"image": base_image, "containerEnv": {"MADE_FROM": "added-template"}})
    url = git_repo(stack.repos / "team-template", {"env/devcontainer.json": config})
    log_in(page, stack.url, "boss", "boss-password")
    page.goto(stack.url + "/admin/templates")
    form = page.get_by_test_id("add-template")
    form.locator("input[name=name]").fill("team")
    form.locator("input[name=git_url]").fill(url)
    form.locator("input[name=git_ref]").fill("main")
    form.locator("input[name=git_path]").fill("env")
    form.locator("button").click()
    assert "Template team added." in page.locator(".alert-success").inner_text()

    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = config.replace("added-template", "uploaded").encode()
        info = tarfile.TarInfo("devcontainer.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    form = page.get_by_test_id("add-template")
    form.locator("input[name=name]").fill("uploaded")
    form.locator("input[name=archive]").set_input_files(str(archive))
    form.locator("button").click()
    assert "Template uploaded added." in page.locator(".alert-success").inner_text()

    form = page.get_by_test_id("add-template")
    form.locator("input[name=name]").fill("broken")
    form.locator("input[name=git_url]").fill("/etc")
    form.locator("button").click()
    assert "BERTH_LOCAL_REPO_ROOTS" in page.locator(".alert-error").inner_text()

    ann = stack.clients["ann"]
    for template, expected in (("team", "added-template"), ("uploaded", "uploaded")):
        ws = ann.wait(ann.create(f"from-{template}", template=template)["id"], "running", "failed")
        assert ws["status"] == "running", ann.log(ws["id"])
        assert ann.sh(ws["id"], "echo $MADE_FROM").strip() == expected
        ann.delete(ws["id"])
        ann.wait(ws["id"], "deleted", timeout=120)
