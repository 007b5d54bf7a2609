"""Workspaces on the real Docker engine, through the real API of a running `berth serve`."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import docker
import pytest

from app.runtime.docker.names import LABEL_INSTANCE, LABEL_WORKSPACE
from tests.dcfiles import git_repo
from tests.services import free_port, wait_until


def labelled(stack, client: docker.DockerClient, ws_id: int) -> dict:
    label = {"label": [f"{LABEL_WORKSPACE}={ws_id}", f"{LABEL_INSTANCE}={stack.instance}"]}
    return {
        "containers": client.containers.list(all=True, filters=label),
        "volumes": client.volumes.list(filters=label),
        "networks": client.networks.list(filters=label),
    }


def test_lifecycle_keeps_files_and_delete_leaves_nothing(stack, docker_client):
    ann = stack.clients["ann"]
    ws = ann.create("life", template="base")
    assert ws["status"] == "pending" and ws["owner"] == "ann" and ws["template"] == "base"
    ws = ann.wait(ws["id"], "running", "failed")
    assert ws["status"] == "running", ann.log(ws["id"])
    wid = ws["id"]

    who = ann.sh(wid, "id -un; pwd; stat -c %U .")
    assert who.split() == ["dev", "/workspaces/life", "dev"]
    ann.sh(wid, "echo kept > notes.txt && echo home > ~/.profile-note")

    first_container = docker_client.containers.get(stack.docker_name(wid)).id
    ann.act(wid, "stop")
    assert ann.wait(wid, "stopped")["status"] == "stopped"
    assert docker_client.containers.get(first_container).status == "exited"
    # The stop's log says what its one stage took.
    timing = [line for line in ann.log(wid).splitlines() if line.startswith("stages: ")]
    assert len(timing) == 1, timing
    assert re.fullmatch(r"stages: stop [\d.]+ s \([\d.]+ s together\)", timing[0]), timing
    assert (
        ann.call("POST", f"/workspaces/{wid}/exec", 409, json={"command": ["true"]}).json()[
            "error"
        ]["code"]
        == "not_running"
    )

    ann.act(wid, "start")
    assert ann.wait(wid, "running")["status"] == "running"
    assert ann.sh(wid, "cat notes.txt ~/.profile-note").split() == ["kept", "home"]

    ann.act(wid, "restart")
    assert ann.wait(wid, "running")["status"] == "running"

    ann.act(wid, "rebuild")
    assert ann.wait(wid, "running")["status"] == "running"
    assert docker_client.containers.get(stack.docker_name(wid)).id != first_container
    assert ann.sh(wid, "cat notes.txt ~/.profile-note").split() == ["kept", "home"]
    assert "using cached image" in ann.log(wid)  # an unchanged rebuild builds nothing

    ann.delete(wid)
    ann.wait(wid, "deleted", timeout=120)
    assert ann.call("GET", f"/workspaces/{wid}").status_code == 404

    # Each job says where its time went, in the API and at the end of its log.
    jobs = {
        job["kind"]: job
        for job in ann.call("GET", f"/workspaces/{wid}/history", 200).json()["transitions"]
    }
    stages = {kind: [s["stage"] for s in job["stages"]] for kind, job in jobs.items()}
    assert stages["create"][:3] == ["source", "config", "build"]
    assert {"volumes", "create", "start", "hooks"} <= set(stages["create"])
    assert stages["start"][:3] == ["source", "config", "build"] and "create" not in stages["start"]
    assert stages["stop"] == ["stop"] and stages["delete"] == ["remove"]
    assert stages["restart"].count("stop") == 1 and "start" in stages["restart"]
    assert all(s["seconds"] >= 0 for job in jobs.values() for s in job["stages"])
    assert all(job["started_at"] and job["finished_at"] for job in jobs.values())
    assert labelled(stack, docker_client, wid) == {"containers": [], "volumes": [], "networks": []}
    # The name is free again once the workspace is gone.
    again = ann.create("life", template="base")
    ann.delete(again["id"])
    ann.wait(again["id"], "deleted", timeout=120)


def test_history_records_every_transition_with_cause_and_actor(stack):
    import sqlite3

    ann = stack.clients["ann"]
    ws = ann.create("history", template="base")
    ann.wait(ws["id"], "running")
    ann.act(ws["id"], "stop")
    ann.wait(ws["id"], "stopped")
    with sqlite3.connect(stack.data_dir / "berth.db") as db:
        rows = db.execute(
            "SELECT from_status, to_status, cause, actor FROM state_changes "
            "WHERE workspace_id = ? ORDER BY id",
            (ws["id"],),
        ).fetchall()
    assert [r[1] for r in rows] == [
        "pending",
        "building",
        "starting",
        "running",
        "stopping",
        "stopped",
    ]
    assert {(r[2], r[3]) for r in rows} == {("api", "ann")}
    assert rows[1][0] == "pending" and rows[-1][0] == "stopping"
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_delete_can_keep_volumes(stack, docker_client):
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("keeper", template="base")["id"], "running")
    ann.delete(ws["id"], keep_volumes=True)
    ann.wait(ws["id"], "deleted", timeout=120)
    left = labelled(stack, docker_client, ws["id"])
    assert left["containers"] == [] and left["networks"] == []
    assert sorted(v.name for v in left["volumes"]) == [
        stack.docker_name(ws["id"], "-home"),
        stack.docker_name(ws["id"], "-workspace"),
    ]
    for volume in left["volumes"]:
        volume.remove()


def test_workspace_from_a_repository_with_its_own_config(stack, base_image):
    url = git_repo(
        stack.repos / "own-config",
        {
            "README.md": "hello from the repo\n",
            ".devcontainer/devcontainer.json": json.dumps(
                {
                    "image": base_image,
                    "postCreateCommand": "echo created > /tmp/from-repo",
                    "containerEnv": {"FROM_REPO": "yes"},
                }
            ),
        },
    )
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("fromrepo", repo={"url": url})["id"], "running", "failed")
    assert ws["status"] == "running", ann.log(ws["id"])
    out = ann.sh(
        ws["id"],
        "pwd; cat README.md; cat /tmp/from-repo; echo $FROM_REPO; git log --oneline | wc -l",
    )
    assert out.split("\n")[:4] == ["/workspaces/fromrepo", "hello from the repo", "created", "yes"]
    assert "using the repository's own devcontainer.json" in ann.log(ws["id"])
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_a_repository_with_several_configs_asks_which_one(stack, base_image):
    """No silent pick: without a choice the create fails naming every config; with one,
    that config is built; a choice the repository does not have is named."""
    config = {"image": base_image}
    url = git_repo(
        stack.repos / "several",
        {
            ".devcontainer/api/devcontainer.json": json.dumps(
                {**config, "containerEnv": {"WHICH": "api"}}
            ),
            ".devcontainer/web/devcontainer.json": json.dumps(
                {**config, "containerEnv": {"WHICH": "web"}}
            ),
        },
    )
    ann = stack.clients["ann"]
    asked = ann.wait(ann.create("several", repo={"url": url})["id"], "running", "failed")
    assert asked["status"] == "failed"
    assert asked["error"].startswith("the repository has 2 devcontainer configs (")
    assert ".devcontainer/api/devcontainer.json" in asked["error"]
    assert ".devcontainer/web/devcontainer.json" in asked["error"]
    assert asked["repo"]["choices"] == [
        ".devcontainer/api/devcontainer.json",
        ".devcontainer/web/devcontainer.json",
    ]
    # Answered on the failed workspace itself: built with that one, the name kept.
    answer = ann.call(
        "PUT",
        f"/workspaces/{asked['id']}/config",
        202,
        json={"config": ".devcontainer/api/devcontainer.json"},
    ).json()
    assert answer["transition"]["kind"] == "start"
    asked = ann.wait(asked["id"], "running", "failed")
    assert asked["status"] == "running", ann.log(asked["id"])
    assert asked["repo"]["config"] == ".devcontainer/api/devcontainer.json"
    assert "choices" not in asked["repo"]
    assert ann.sh(asked["id"], "echo $WHICH").strip() == "api"
    refused = ann.call(
        "PUT", f"/workspaces/{asked['id']}/config", 409, json={"config": answer["workspace"][
            "repo"]["config"]}
    ).json()["error"]  # fmt: skip
    assert refused["code"] == "invalid_state" and "is running" in refused["message"]

    chosen = ann.create(
        "chosen", repo={"url": url, "config": "./.devcontainer//web/devcontainer.json"}
    )
    assert chosen["repo"]["config"] == ".devcontainer/web/devcontainer.json"  # as stored
    chosen = ann.wait(chosen["id"], "running", "failed")
    assert chosen["status"] == "running", ann.log(chosen["id"])
    assert ann.sh(chosen["id"], "echo $WHICH").strip() == "web"
    assert "using the repository's .devcontainer/web/devcontainer.json" in ann.log(chosen["id"])

    missing = ann.create(
        "missing", repo={"url": url, "config": ".devcontainer/db/devcontainer.json"}
    )
    missing = ann.wait(missing["id"], "running", "failed")
    assert missing["status"] == "failed" and "devcontainer.json" in missing["error"]
    for ws in (asked, chosen, missing):
        ann.delete(ws["id"])


def test_repository_without_config_uses_the_template(stack):
    url = git_repo(stack.repos / "plain", {"app.txt": "plain repo\n"})
    ann = stack.clients["ann"]
    ws = ann.wait(
        ann.create("plainrepo", template="base", repo={"url": url, "ref": "main"})["id"],
        "running",
        "failed",
    )
    assert ws["status"] == "running", ann.log(ws["id"])
    assert ann.sh(ws["id"], "cat app.txt; stat -c %U app.txt; id -un").split() == [
        "plain",
        "repo",
        "dev",
        "dev",
    ]
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_a_failing_clone_fails_clearly(stack):
    ann = stack.clients["ann"]
    missing = stack.repos / "does-not-exist"
    ws = ann.create("badclone", template="base", repo={"url": f"file://{missing}"})
    ws = ann.wait(ws["id"], "failed")
    assert ws["error"].startswith(f"cloning file://{missing} failed")
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_local_repositories_outside_the_allowed_roots_are_refused(stack):
    error = (
        stack.clients["ann"]
        .call(
            "POST",
            "/workspaces",
            422,
            json={"name": "sneaky", "template": "base", "repo": {"url": "/etc"}},
        )
        .json()["error"]
    )
    assert error["code"] == "invalid_repo" and "BERTH_LOCAL_REPO_ROOTS" in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (
            {"name": "x1", "template": "nope"},
            422,
            "unknown_template",
            "template 'nope' does not exist",
        ),
        ({"name": "Bad Name", "template": "base"}, 422, "invalid_name", "is not allowed"),
        (
            {"name": "p1", "template": "base", "parameters": {"gpu": 1}},
            422,
            "invalid_parameter",
            "unknown parameter 'gpu'",
        ),
        (
            {"name": "p2", "template": "base", "parameters": {"cpu": "lots"}},
            422,
            "invalid_parameter",
            "must be a number",
        ),
        (
            {"name": "p3", "template": "base", "parameters": {"memory": 1}},
            422,
            "invalid_parameter",
            "below the minimum 256 MB",
        ),
        (
            {"name": "p4", "template": "base", "parameters": {"memory": 10**7}},
            422,
            "invalid_parameter",
            "above the maximum 8192 MB",
        ),
        ({"name": "p5", "template": "base", "ttl": "soon"}, 422, "invalid_ttl", "not a duration"),
        ({"name": "p6"}, 422, "missing_source", "give a 'template' or a 'repo'"),
        ({"name": "p7", "template": "base", "colour": "red"}, 422, "unknown_field", "'colour'"),
    ],
)
def test_bad_requests_are_refused_and_create_nothing(
    stack, docker_client, body, status, code, words
):
    ann = stack.clients["ann"]
    before = len(ann.call("GET", "/workspaces").json())
    containers = len(docker_client.containers.list(all=True))
    error = ann.call("POST", "/workspaces", status, json=body).json()["error"]
    assert error["code"] == code and words in error["message"]
    assert len(ann.call("GET", "/workspaces").json()) == before
    assert len(docker_client.containers.list(all=True)) == containers


def test_duplicate_names_conflict_per_owner(stack):
    ann, bob = stack.clients["ann"], stack.clients["bob"]
    ws = ann.create("twin", template="base")
    error = ann.call("POST", "/workspaces", 409, json={"name": "twin", "template": "base"}).json()
    assert error["error"]["code"] == "name_taken"
    other = bob.create("twin", template="base")  # another owner may use the same name
    for client, item in ((ann, ws), (bob, other)):
        client.wait(item["id"], "running", "failed")
        client.delete(item["id"])
        client.wait(item["id"], "deleted", timeout=120)


def test_authorization_member_admin_other_member(stack):
    ann, bob, boss = (stack.clients[n] for n in ("ann", "bob", "boss"))
    ws = ann.create("private", template="base")
    wid = ws["id"]
    assert bob.call("GET", f"/workspaces/{wid}").status_code == 404
    assert bob.call("POST", f"/workspaces/{wid}/stop").status_code == 404
    assert bob.call("DELETE", f"/workspaces/{wid}").status_code == 404
    assert bob.call("POST", f"/workspaces/{wid}/exec", json={"command": ["id"]}).status_code == 404
    assert wid not in [w["id"] for w in bob.call("GET", "/workspaces").json()]
    assert boss.get(wid)["owner"] == "ann"
    assert wid in [w["id"] for w in boss.call("GET", "/workspaces").json()]
    boss.wait(wid, "running", "failed")
    assert boss.exec(wid, ["id", "-un"])["stdout"] == "dev\n"
    boss.delete(wid)
    ann.wait(wid, "deleted", timeout=120)


def test_transitions_refused_in_the_wrong_state(stack):
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("states", template="base")["id"], "running")
    error = ann.call("POST", f"/workspaces/{ws['id']}/start", 409).json()["error"]
    assert (
        error["code"] == "invalid_state" and "is running; it cannot start now" in error["message"]
    )
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_actions_with_wait_answer_when_their_job_ended(stack):
    ann = stack.clients["ann"]
    body = {"name": "waits", "template": "base", "wait": 300}
    ws = ann.call("POST", "/workspaces", 201, json=body).json()
    assert ws["status"] == "running", ann.log(ws["id"])
    wid = ws["id"]
    for bad in ("soon", "-1", "2000"):  # refused before anything is asked of the worker
        error = ann.call("POST", f"/workspaces/{wid}/stop?wait={bad}", 422).json()["error"]
        assert error["code"] == "invalid_wait" and "1800" in error["message"]
    assert ann.get(wid)["status"] == "running"
    assert [j["kind"] for j in ann.call("GET", f"/workspaces/{wid}/history").json()[
        "transitions"]] == ["create"]  # fmt: skip

    stopped = ann.call("POST", f"/workspaces/{wid}/stop?wait=true", 202).json()
    assert stopped["workspace"]["status"] == "stopped"
    assert stopped["transition"]["status"] == "succeeded"
    started = ann.call("POST", f"/workspaces/{wid}/start?wait=120", 202).json()
    assert started["workspace"]["status"] == "running"
    # A start with nothing to set up answers once the workspace runs; its job may still
    # write the postStart marker. A stop asked for at once waits for that, not refused.
    assert started["transition"]["status"] in ("running", "succeeded")
    again = ann.call("POST", f"/workspaces/{wid}/stop?wait=true", 202).json()
    assert (again["workspace"]["status"], again["transition"]["status"]) == (
        "stopped",
        "succeeded",
    )
    ann.call("POST", f"/workspaces/{wid}/start?wait=120", 202)
    assert ann.sh(wid, "echo up") == "up\n"
    gone = ann.call("DELETE", f"/workspaces/{wid}?wait=1&keep_volumes=false", 202).json()
    assert gone["transition"]["kind"] == "delete"
    ann.wait(wid, "deleted", timeout=120)


def test_a_command_right_after_create_wait_gets_the_probed_environment(stack, base_image):
    """A new container with no command in any phase counts as running before its job has
    probed the user's environment; a command (or SSH session) that comes at once waits
    for it and gets remoteEnv (recorded with the probe's result), every time."""
    url = git_repo(
        stack.repos / "probed",
        {
            ".devcontainer/devcontainer.json": json.dumps(
                {
                    "image": base_image,
                    "remoteUser": "root",
                    "containerEnv": {"BASE": "b"},
                    "remoteEnv": {"FROM_REMOTE": "remote-${containerEnv:BASE}"},
                    "userEnvProbe": "loginShell",
                }
            ),
        },
    )
    ann = stack.clients["ann"]
    for n in range(2):
        body = {"name": f"probed{n}", "repo": {"url": url}, "wait": 300}
        ws = ann.call("POST", "/workspaces", 201, json=body).json()
        assert ws["status"] == "running", ann.log(ws["id"])
        result = ann.exec(ws["id"], ["sh", "-c", "echo $FROM_REMOTE"])
        assert result["stdout"] == "remote-b\n", result
        ann.delete(ws["id"])
        ann.wait(ws["id"], "deleted", timeout=120)


def test_exec_separates_streams_and_times_out(stack):
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("execs", template="base")["id"], "running")
    result = ann.exec(ws["id"], ["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert result == {"exit_code": 4, "stdout": "out\n", "stderr": "err\n", "timed_out": False}
    slow = ann.exec(ws["id"], ["sleep", "30"], timeout=1)
    assert slow["timed_out"] is True
    assert (
        ann.call("POST", f"/workspaces/{ws['id']}/exec", 422, json={"command": "ls"}).json()[
            "error"
        ]["code"]
        == "invalid_command"
    )
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_logs_stream_as_server_sent_events(stack):
    ann = stack.clients["ann"]
    ws = ann.create("streamed", template="base")
    response = ann.session.get(f"{ann.base}/workspaces/{ws['id']}/logs", stream=True, timeout=300)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for line in response.iter_lines(decode_unicode=True):
        events.append(line)
        if line.startswith("event: end"):
            break
    text = "\n".join(events)
    assert "event: transition" in text and "create requested by ann" in text
    assert "create done" in text
    ann.delete(ws["id"])
    ann.wait(ws["id"], "deleted", timeout=120)


def test_openapi_describes_every_route(stack):
    """The served document is the one written from the routes and their models, and it
    has every route (tests/test_api_spec.py checks the rest without a server)."""
    from app.api.openapi import document as write
    from app.config import Settings
    from app.factory import create_app

    served = stack.clients["ann"].call("GET", "/openapi.json", 200).json()
    app = create_app(Settings.load({"data_dir": str(stack.data_dir)}))
    assert served == json.loads(json.dumps(write(app)))
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v2/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v2") :])
            routes.setdefault(path, set()).update(
                m.lower() for m in rule.methods if m not in ("HEAD", "OPTIONS")
            )
    assert routes == {path: set(ops) for path, ops in served["paths"].items()}


# A service answering on port 7000 (the base image has perl); $$ is a $ to Compose.
DB_SERVER = (
    "use IO::Socket::INET; $$s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, "
    "ReuseAddr => 1) or die; while ($$c = $$s->accept) { print $$c qq(hello from db\\n); "
    "close $$c }"
)


def test_a_compose_repository_runs_every_service_under_berths_policy(
    stack, docker_client, base_image, tmp_path
):
    """A repository whose config names compose files: its service is the workspace, the
    others run beside it on the workspace's own network (reached by service name), each
    hardened as the workspace is; stop, start, rebuild and delete act on all of them, and
    a named volume keeps its data across them."""
    url = git_repo(
        stack.repos / "compose-app",
        {
            "README.md": "compose\n",
            "docker-compose.yml": f"""
services:
  app:
    image: {base_image}
    command: sleep infinity
    volumes: ["..:/workspaces:cached"]
    depends_on: [db]
    environment: {{DB_HOST: db}}
  db:
    image: {base_image}
    command: ["sh", "-c", "date +%s%N >> /data/starts; exec perl -e '{DB_SERVER}'"]
    volumes: ["dbdata:/data"]
    ports: ["5432:5432"]
volumes: {{dbdata: {{}}}}
""",
            ".devcontainer/devcontainer.json": json.dumps(
                {
                    "dockerComposeFile": "../docker-compose.yml",
                    "service": "app",
                    "workspaceFolder": "/workspaces/${localWorkspaceFolderBasename}",
                    "postCreateCommand": "getent hosts db > /tmp/db-address",
                    "containerEnv": {"FROM_CONFIG": "yes"},
                }
            ),
        },
    )
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("composed", repo={"url": url})["id"], "running", "failed")
    assert ws["status"] == "running", ann.log(ws["id"])
    wid = ws["id"]
    log = ann.log(wid)
    assert "ports are not published on the server" in log  # the warning, by property
    out = ann.sh(wid, "pwd; cat README.md; echo $DB_HOST $FROM_CONFIG; cat /tmp/db-address")
    lines = out.splitlines()
    # The compose file mounts the repository's parent at /workspaces: the repository is
    # the workspace volume at /workspaces/<its name>.
    assert lines[0] == "/workspaces/composed" and lines[1] == "compose", out
    assert lines[2] == "db yes" and lines[3].split()[1] == "db", out

    def mine(role):
        label = [f"{LABEL_WORKSPACE}={wid}", f"{LABEL_INSTANCE}={stack.instance}"]
        return [
            c
            for c in docker_client.containers.list(all=True, filters={"label": label})
            if c.labels.get("berth.role") == role
        ]

    (db,) = mine("service")
    (main,) = mine("workspace")
    host = db.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["Privileged"]
    assert any(o.startswith("seccomp=") for o in host["SecurityOpt"])
    assert host["Memory"] == main.attrs["HostConfig"]["Memory"] > 0
    assert host["PortBindings"] in (None, {})  # nothing published on the host
    assert set(db.attrs["NetworkSettings"]["Networks"]) == set(
        main.attrs["NetworkSettings"]["Networks"]
    )
    assert all(m["Type"] == "volume" for m in db.attrs["Mounts"])
    assert not any(m["Destination"].startswith("/opt/berth") for m in db.attrs["Mounts"])

    # From the person's machine: ssh -L to the database by its service name.
    key = tmp_path / "id_compose"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ann.call(
        "POST", "/users/me/keys", 201, json={"public_key": key.with_suffix(".pub").read_text()}
    )
    local = free_port()
    tunnel = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o",
         "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-i", str(key), "-N", "-L", f"{local}:db:7000",
         "-L", f"{local + 1}:elsewhere.example:7000", "-p", str(stack.ssh_port),
         "composed@127.0.0.1"]
    )  # fmt: skip
    try:

        def answer(port):
            try:
                with socket.create_connection(("127.0.0.1", port), 2) as conn:
                    return conn.recv(100).decode() or None
            except OSError:
                return None

        assert wait_until(lambda: answer(local), timeout=30, what="db through ssh") == (
            "hello from db\n"
        )
        assert answer(local + 1) is None  # not a service of this workspace: closed
    finally:
        tunnel.terminate()
        tunnel.wait(10)

    ann.act(wid, "stop")
    assert ann.wait(wid, "stopped")["status"] == "stopped"
    assert {c.status for c in mine("service") + mine("workspace")} == {"exited"}
    ann.act(wid, "start")
    assert ann.wait(wid, "running")["status"] == "running"
    db.reload()
    assert db.status == "running"
    ann.act(wid, "rebuild")
    assert ann.wait(wid, "running")["status"] == "running", ann.log(wid)
    (db2,) = mine("service")
    assert db2.id != db.id
    # The named volume outlived the stop and the rebuild: three starts are in it.
    starts = db2.exec_run(["sh", "-c", "wc -l < /data/starts"]).output.decode().strip()
    assert starts == "3", starts

    ann.delete(wid)
    ann.wait(wid, "deleted", timeout=120)
    assert labelled(stack, docker_client, wid) == {"containers": [], "volumes": [], "networks": []}
