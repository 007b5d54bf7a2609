"""Lifecycle automation on real containers, with intervals of seconds: idle stop and what
keeps a workspace up (SSH input yes, an idle open SSH session no, berth-keepalive and the
keep-alive API yes, a running API exec yes), max runtime, TTL, dormancy with a volume
backup restored into a new workspace. (An open IDE tab counts through code-server's
heartbeat; that is tested with the IDE.)"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import start_stack, stop_stack
from tests.services import wait_until


@pytest.fixture(scope="module")
def lc(tmp_path_factory, docker_client, base_image):
    root = tmp_path_factory.mktemp("lifecycle")
    server = start_stack(root, {"BERTH_LIFECYCLE_INTERVAL": "1", "BERTH_ACTIVITY_INTERVAL": "1"})
    key = root / "id_ann"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.clients["ann"].call(
        "POST", "/users/me/keys", 201, json={"public_key": (root / "id_ann.pub").read_text()}
    )
    server.key = key
    yield server
    stop_stack(server)


def ssh(lc, login: str, command: str, **kwargs) -> subprocess.Popen:
    argv = [
        "ssh", "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-i", str(lc.key), "-p", str(lc.ssh_port), f"{login}@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def running(client, name: str, **body) -> dict:
    ws = client.create(name, **body)
    return client.wait(ws["id"], "running", timeout=600)


def history(client, ws_id: int) -> dict:
    return client.call("GET", f"/workspaces/{ws_id}/history", 200).json()


def automatic(client, ws_id: int, kind: str) -> dict:
    """The newest automatic (scheduled) job of ``kind``."""
    jobs = history(client, ws_id)["transitions"]
    found = [t for t in jobs if t["kind"] == kind and t["cause"] == "schedule"]
    assert found, jobs
    return found[0]


def status(client, ws_id: int) -> str:
    response = client.call("GET", f"/workspaces/{ws_id}")
    return "deleted" if response.status_code == 404 else response.json()["status"]


def patch_limits(lc, template: str, **limits) -> dict:
    boss = lc.clients["boss"]
    current = {t["name"]: t for t in boss.call("GET", "/templates", 200).json()}[template]
    boss.call(
        "PATCH", f"/templates/{template}", 200, json={"limits": {**current["limits"], **limits}}
    )
    return current["limits"]


def test_an_idle_workspace_stops_and_the_history_says_why(lc):
    ann = lc.clients["ann"]
    ws = running(ann, "idler", template="python", parameters={"idle_timeout": "6s"})
    look = ann.get(ws["id"])["lifecycle"]
    assert look["idle_timeout"] == "6s" and look["stop_rule"] == "idle" and look["stops_at"]
    ann.wait(ws["id"], "stopped", timeout=60)
    job = automatic(ann, ws["id"], "stop")
    assert job["actor"] == "idle" and job["status"] == "succeeded"
    assert "idle for 6s" in job["reason"]
    change = next(c for c in history(ann, ws["id"])["changes"] if c["to"] == "stopping")
    assert change["cause"] == "schedule" and change["message"] == job["reason"]
    # Stopped: nothing stops it again, and nothing deletes it by default.
    assert ann.get(ws["id"])["lifecycle"]["stops_at"] is None
    assert ann.get(ws["id"])["lifecycle"]["deletes_at"] is None


def test_ssh_input_keeps_a_workspace_up_an_idle_open_session_does_not(lc):
    ann = lc.clients["ann"]
    typist = running(ann, "typist", template="python", parameters={"idle_timeout": "8s"})
    lurker = running(ann, "lurker", template="python", parameters={"idle_timeout": "8s"})
    quiet = ssh(lc, "lurker", "sleep 300", stdin=subprocess.PIPE)
    typing = ssh(lc, "typist", "cat > typed.txt", stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            typing.stdin.write(b"key\n")
            typing.stdin.flush()
            time.sleep(2)
        assert status(ann, typist["id"]) == "running"
        assert status(ann, lurker["id"]) in ("stopping", "stopped")
        assert automatic(ann, lurker["id"], "stop")["actor"] == "idle"
        seen = ann.get(typist["id"])["activity"]
        assert seen["source"] == "ssh" and seen["detail"] == "input (ann)"
    finally:
        typing.stdin.close()  # the session ends; then the typist idles out too
        typing.wait(30)
        quiet.kill()
    ann.wait(typist["id"], "stopped", timeout=60)
    assert "last use: ssh" in automatic(ann, typist["id"], "stop")["reason"]


def test_berth_keepalive_and_the_keepalive_api_keep_a_workspace_up(lc):
    """Three ways to keep a workspace up with no input, each in a workspace of its own,
    side by side: a long job under berth-keepalive in a quiet SSH session, the keep-alive
    API (agents waiting on something outside), and a running API exec."""
    ann = lc.clients["ann"]
    made = {
        name: ann.create(name, template="python", parameters={"idle_timeout": "8s"})
        for name in ("longjob", "waiter", "runner")
    }
    spaces = {name: ann.wait(ws["id"], "running", timeout=600) for name, ws in made.items()}

    def long_job():
        job = ssh(
            lc,
            "longjob",
            "BERTH_KEEPALIVE_INTERVAL=2 berth-keepalive -m 'long job' sleep 20 && echo finished",
            stdin=subprocess.DEVNULL,
        )
        out, err = job.communicate(timeout=90)
        assert job.returncode == 0, err
        assert out.decode().strip() == "finished"
        assert status(ann, spaces["longjob"]["id"]) == "running"
        seen = ann.get(spaces["longjob"]["id"])["activity"]["sources"]["keepalive"]
        assert seen["detail"] == "long job: sleep 20"

    def keepalive_api():
        ws_id = spaces["waiter"]["id"]
        for _ in range(10):
            body = ann.call(
                "POST", f"/workspaces/{ws_id}/activity", 200, json={"detail": "waiting on the LLM"}
            ).json()
            assert body["activity"]["source"] == "keepalive"
            time.sleep(2)
        assert status(ann, ws_id) == "running"

    def running_exec():
        ws_id = spaces["runner"]["id"]
        assert ann.exec(ws_id, ["sleep", "16"], timeout=60)["exit_code"] == 0
        assert status(ann, ws_id) == "running"
        ann.wait(ws_id, "stopped", timeout=60)
        assert "last use: exec (sleep 16)" in automatic(ann, ws_id, "stop")["reason"]

    with ThreadPoolExecutor(max_workers=3) as pool:
        for done in [pool.submit(check) for check in (long_job, keepalive_api, running_exec)]:
            done.result()


def test_the_idle_timeout_is_adjustable_within_the_template_range(lc):
    ann = lc.clients["ann"]
    ws = ann.create("tuned", template="python", parameters={"idle_timeout": "1h"})
    path = f"/workspaces/{ws['id']}/idle-timeout"
    changed = ann.call("PUT", path, 200, json={"idle_timeout": "0"}).json()
    assert changed["lifecycle"]["idle_timeout"] == "never"
    refused = ann.call("PUT", path, 422, json={"idle_timeout": "3d"}).json()
    assert "longer than this template allows (24h)" in refused["error"]["message"]
    assert ann.get(ws["id"])["lifecycle"]["idle_timeout"] == "never"


def test_max_runtime_stops_a_busy_workspace_after_a_warning(lc):
    ann = lc.clients["ann"]
    before = patch_limits(lc, "base", max_runtime="25s", warn_before="20s")
    try:
        ws = running(ann, "sprinter", template="base", parameters={"idle_timeout": "0"})
        warnings = set()
        while status(ann, ws["id"]) == "running":
            body = ann.call("POST", f"/workspaces/{ws['id']}/activity", 200).json()
            warnings.update(body["lifecycle"]["warnings"])
            time.sleep(1)
        ann.wait(ws["id"], "stopped", timeout=60)
    finally:
        lc.clients["boss"].call("PATCH", "/templates/base", 200, json={"limits": before})
    assert any("will be stopped at" in w and "25s of continuous running" in w for w in warnings)
    job = automatic(ann, ws["id"], "stop")
    assert job["actor"] == "max-runtime" and "the template's maximum of 25s" in job["reason"]
    ann.delete(ws["id"])


def test_a_ttl_deletes_the_workspace_and_an_extension_moves_the_deadline(lc):
    ann = lc.clients["ann"]
    doomed = ann.create("doomed", template="agent-sandbox", ttl="15s")
    kept = ann.create("kept", template="agent-sandbox", ttl="15s")
    old_deadline = kept["lifecycle"]["deletes_at"]
    extended = ann.call("PUT", f"/workspaces/{kept['id']}/ttl", 200, json={"ttl": "10m"}).json()
    assert extended["lifecycle"]["deletes_at"] > old_deadline
    assert extended["lifecycle"]["delete_rule"] == "ttl"
    too_far = ann.call("PUT", f"/workspaces/{kept['id']}/ttl", 422, json={"ttl": "30h"}).json()
    assert "30h is longer than this template allows (24h)" in too_far["error"]["message"]
    removed = ann.call("PUT", f"/workspaces/{kept['id']}/ttl", 422, json={"ttl": None}).json()
    assert "always have a TTL" in removed["error"]["message"]
    wait_until(lambda: status(ann, doomed["id"]) == "deleted", 120, 1, "the TTL deletion")
    job = automatic(ann, doomed["id"], "delete")
    assert job["actor"] == "ttl" and "time to live ended" in job["reason"]
    ann.wait(kept["id"], "running")
    notes = [c["message"] for c in history(ann, kept["id"])["changes"]]
    assert any(n and n.startswith("TTL: deleted at") for n in notes)


def test_dormancy_deletes_after_a_backup_that_restores_into_a_new_workspace(lc):
    ann = lc.clients["ann"]
    ws = running(ann, "sleeper", template="base")
    ann.sh(
        ws["id"],
        "mkdir -p sub && echo 'keep me' > sub/note.txt && chmod 640 sub/note.txt"
        " && ln -s sub/note.txt link && echo home-file > ~/marker",
    )
    ann.act(ws["id"], "stop")
    ann.wait(ws["id"], "stopped")
    before = patch_limits(lc, "base", dormant_after="4s", dormant_backup=True)
    try:
        wait_until(lambda: status(ann, ws["id"]) == "deleted", 180, 1, "the dormancy deletion")
    finally:
        lc.clients["boss"].call("PATCH", "/templates/base", 200, json={"limits": before})
    job = automatic(ann, ws["id"], "delete")
    assert job["actor"] == "dormancy" and job["status"] == "succeeded"
    assert "stopped since" in job["reason"]
    backups = [
        b for b in ann.call("GET", "/backups", 200).json() if b["workspace"]["name"] == "sleeper"
    ]
    assert len(backups) == 1 and backups[0]["workspace"]["volumes"] == ["home", "workspace"]
    assert backups[0]["size"] > 0
    # bob cannot restore ann's backup; ann can, into a new workspace.
    lc.clients["bob"].call(
        "POST", "/workspaces", 404, json={"name": "thief", "restore": backups[0]["id"]}
    )
    woken = ann.create("woken", restore=backups[0]["id"])
    assert woken["template"] == "base"
    ann.wait(woken["id"], "running")
    out = ann.sh(
        woken["id"], "cat sub/note.txt; stat -c '%U %a' sub/note.txt; readlink link; cat ~/marker"
    )
    assert out.split("\n")[:4] == ["keep me", "dev 640", "sub/note.txt", "home-file"]
    assert "restored the volumes home, workspace" in ann.log(woken["id"])


def test_an_on_demand_backup_of_a_running_workspace(lc):
    ann = lc.clients["ann"]
    ws = running(ann, "snap", template="base", parameters={"idle_timeout": "0"})
    ann.sh(ws["id"], "echo snapshot > file.txt")
    ann.act(ws["id"], "backup")
    done = ann.wait(ws["id"], "running")
    assert done["last_transition"]["kind"] == "backup"
    assert done["last_transition"]["status"] == "succeeded"
    mine = [b for b in ann.call("GET", "/backups", 200).json() if b["workspace"]["name"] == "snap"]
    assert len(mine) == 1
    assert not [b for b in lc.clients["bob"].call("GET", "/backups", 200).json()]
    kinds = {b["kind"] for b in lc.clients["boss"].call("GET", "/backups", 200).json()}
    assert "workspace" in kinds
    listed = lc.cli("backup", "list").stdout
    assert mine[0]["id"] in listed


def test_the_admin_page_shows_jobs_and_backups(lc, page):
    lc.cli("backup", "now")
    page.goto(lc.url + "/login")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "boss-password")
    page.click("button[type=submit]")
    page.goto(lc.url + "/admin/operations")
    jobs = page.locator("[data-testid=jobs]")
    for name in ("reconcile", "lifecycle", "backup"):
        assert jobs.locator(f"tr[data-job={name}]").count() == 1
    lifecycle_row = jobs.locator("tr[data-job=lifecycle]")
    # It runs every second, so a page may catch it "running"; its last outcome shows
    # on another load.
    for _ in range(10):
        if "succeeded" in lifecycle_row.inner_text():
            break
        page.wait_for_timeout(300)
        page.reload()
    assert "succeeded" in lifecycle_row.inner_text()
    assert "every 1s" in lifecycle_row.inner_text()
    rows = page.locator("[data-testid=backups] tbody tr")
    assert "database" in rows.first.inner_text() and ".sqlite3" in rows.first.inner_text()
    page.click("text=Back up the database now")
    assert "Backup written" in page.locator(".alert-success").inner_text()


def test_the_workspace_page_explains_and_changes_the_lifecycle(lc, page):
    ann = lc.clients["ann"]
    ws = running(ann, "viewer", template="python", parameters={"idle_timeout": "1h"}, ttl="2h")
    page.goto(lc.url + "/login")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "ann-password")
    page.click("button[type=submit]")
    page.goto(f"{lc.url}/workspaces/{ws['id']}")
    assert "unless used (idle timeout 1h)" in page.locator("[data-testid=stops-at]").inner_text()
    assert "its time to live" in page.locator("[data-testid=deletes-at]").inner_text()
    page.fill("input[name=idle_timeout]", "2h")
    page.click("form:has(input[name=idle_timeout]) button")
    assert "Idle timeout of viewer set" in page.locator(".alert-success").inner_text()
    assert "(idle timeout 2h)" in page.locator("[data-testid=stops-at]").inner_text()
    before = ann.get(ws["id"])["lifecycle"]["deletes_at"]
    page.fill("input[name=ttl]", "5h")
    page.click("text=Extend")
    assert "Time to live of viewer set" in page.locator(".alert-success").inner_text()
    assert ann.get(ws["id"])["lifecycle"]["deletes_at"] > before
    history = page.locator("[data-testid=history]").inner_text()
    assert "idle timeout set to 2h" in history and "TTL: deleted at" in history
