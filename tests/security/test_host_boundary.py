"""Attacks from inside workspaces and sandboxes on a real ``berth serve``: host files
through /run/berth (finding 1), other people's and Berth's volumes (2), template
approvals taken by a repository (4), image builds reaching the host (7), the control
plane's files and the IDE reached around Berth (12), the egress proxy and firewall
(5, 13), and a forwarded SSH agent in a shared workspace (10). Each attack fails, and the
legitimate use beside it still works."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests

from app.workspaces import ide
from tests.conftest import start_stack, stop_stack
from tests.dcfiles import git_repo
from tests.services import wait_until


@pytest.fixture(scope="module")
def hb(tmp_path_factory, docker_client, base_image):
    root = tmp_path_factory.mktemp("boundary")
    server = start_stack(root, {"BERTH_LIFECYCLE_INTERVAL": "1", "BERTH_ACTIVITY_INTERVAL": "1"})
    server.canary = root / "host-canary.txt"
    server.canary.write_text(f"CANARY-{secrets.token_hex(8)}\n")
    server.canary.chmod(0o644)
    yield server
    stop_stack(server)


def _running(client, name: str, **body) -> dict:
    ws = client.create(name, **body)
    done = client.wait(ws["id"], "running", "failed")
    assert done["status"] == "running", client.log(ws["id"])
    return done


def _gone(client, *ws_ids):
    for ws_id in ws_ids:
        client.delete(ws_id)
    for ws_id in ws_ids:
        client.wait(ws_id, "deleted", timeout=120)


def _inspect(hb, docker_client, ws_id: int) -> dict:
    return docker_client.containers.get(hb.docker_name(ws_id)).attrs


def _fingerprint(path) -> tuple:
    info = os.stat(path)
    return path.read_bytes(), info.st_mode, info.st_uid, info.st_gid


# --- finding 1: /run/berth ----------------------------------------------------------------


def test_run_berth_is_the_workspaces_own_memory_and_no_host_folder(hb, docker_client):
    ann = hb.clients["ann"]
    ws = _running(ann, "own-tmpfs", template="base")
    attrs = _inspect(hb, docker_client, ws["id"])
    writable_binds = [m for m in attrs["Mounts"] if m["Type"] == "bind" and m["RW"]]
    assert writable_binds == []
    assert "/run/berth" in attrs["HostConfig"]["Tmpfs"]
    seen = ann.sh(ws["id"], "stat -f -c %T /run/berth; stat -c '%U %a' /run/berth")
    assert seen.split() == ["tmpfs", "dev", "700"]
    _gone(ann, ws["id"])


def test_hostile_keepalive_marks_reach_no_host_file_and_stall_no_sweep(hb):
    """A link to a host file, a FIFO, a folder, a huge file and a reader that never ends
    at /run/berth/keepalive: none keeps its workspace up, none shows a host file, and the
    sweep goes on (the untouched workspace idles out on time too)."""
    ann = hb.clients["ann"]
    canary = _fingerprint(hb.canary)
    plants = {
        "kl-link": f"ln -sf {hb.canary} /run/berth/keepalive",
        "kl-fifo": "mkfifo /run/berth/keepalive",
        "kl-dir": "mkdir /run/berth/keepalive",
        "kl-huge": "head -c 900000 /dev/zero | tr '\\0' x > /run/berth/keepalive",
        "kl-hang": "echo mark > /run/berth/keepalive; printf '#!/bin/sh\\nsleep 600\\n' "
        "| sudo tee /usr/local/bin/head >/dev/null; sudo chmod 755 /usr/local/bin/head",
        "kl-plain": "true",
    }
    made = {name: ann.create(name, template="base", parameters={"idle_timeout": "5s"})["id"]
            for name in plants}  # fmt: skip
    for name, ws_id in made.items():
        assert ann.wait(ws_id, "running", "failed")["status"] == "running", ann.log(ws_id)
        ann.sh(ws_id, plants[name])
    for ws_id in made.values():
        ann.wait(ws_id, "stopped", timeout=90)
    for name, ws_id in made.items():
        text = json.dumps(ann.get(ws_id)) + json.dumps(
            ann.call("GET", f"/workspaces/{ws_id}/history", 200).json()
        )
        assert hb.canary.read_text().strip() not in text, name
        mark = ann.get(ws_id)["activity"]["sources"].get("keepalive") or {}
        assert len(mark.get("detail") or "") <= 200, name  # a huge mark is read 200 bytes deep
    assert _fingerprint(hb.canary) == canary
    _gone(ann, *made.values())


def test_berth_keepalive_still_keeps_a_workspace_up(hb):
    ann = hb.clients["ann"]
    ws = _running(ann, "kl-legit", template="base", parameters={"idle_timeout": "6s"})
    ann.sh(
        ws["id"],
        "setsid sh -c 'BERTH_KEEPALIVE_INTERVAL=1 berth-keepalive -m legit sleep 40' "
        ">/dev/null 2>&1 < /dev/null &",
    )

    def seen():
        found = ann.get(ws["id"])["activity"]["sources"].get("keepalive") or {}
        return found.get("detail") == "legit: sleep 40"

    wait_until(seen, timeout=40, what="the keep-alive mark read")
    time.sleep(8)  # longer than the idle timeout: only the mark keeps it up
    assert ann.get(ws["id"])["status"] == "running"
    _gone(ann, ws["id"])


def test_a_sandbox_token_never_follows_a_link_to_a_host_file(hb):
    ann = hb.clients["ann"]
    secret = _fingerprint(hb.data_dir / "secret_key")
    canary = _fingerprint(hb.canary)
    ws = _running(ann, "tok", template="agent-sandbox")
    plant = (
        f"rm -f /run/berth/token; ln -s {hb.data_dir}/secret_key /run/berth/token; "
        f"ln -s {hb.canary} /run/berth/token.partial; "
        f"ln -s {hb.canary} /run/berth/.token.partial; ls -la /run/berth"
    )
    ann.sh(ws["id"], plant)
    # The sandbox restarts itself with its own token (it may): the token is written again.
    mine = ann.sh(ws["id"], "cat /run/berth/token || echo $BERTH_TOKEN").strip()
    ann.act(ws["id"], "restart")
    ann.wait(ws["id"], "running", timeout=120)
    token = ann.sh(ws["id"], "cat /run/berth/token").strip()
    env_token = ann.sh(ws["id"], "echo $BERTH_TOKEN").strip()
    assert token == env_token and token.startswith("berth_") and token != mine
    from tests.berthapi import Client

    me = Client(hb.url, token).call("GET", "/me", 200).json()
    assert me["token"]["workspace_id"] == ws["id"]
    assert _fingerprint(hb.data_dir / "secret_key") == secret
    assert _fingerprint(hb.canary) == canary
    assert secret[0].decode().strip() not in json.dumps(ann.exec(ws["id"], ["env"]))
    _gone(ann, ws["id"])


# --- finding 2: volumes -------------------------------------------------------------------


def test_a_config_mounts_only_volumes_made_for_its_workspace(hb, docker_client):
    ann, bob = hb.clients["ann"], hb.clients["bob"]
    victim = _running(bob, "victim", template="base")
    marker = f"bob-{secrets.token_hex(4)}"
    bob.sh(victim["id"], f"echo {marker} > ~/secret.txt; echo {marker} > secret.txt")
    theirs = hb.docker_name(victim["id"], "-home")
    their_work = hb.docker_name(victim["id"], "-workspace")
    config = {
        "image": "berth-base:bookworm",
        "workspaceMount": f"source={theirs},target=/workspaces/steal,type=volume",
        "workspaceFolder": "/workspaces/steal",
        "mounts": [
            f"source={theirs},target=/steal-home,type=volume",
            {"type": "volume", "source": their_work, "target": "/steal-work"},
            "source=berth-tools,target=/tools,type=volume",
            "type=volume,target=/anonymous",
            "source=cache,target=/cache,type=volume",
        ],
        "runArgs": ["-v", f"{theirs}:/steal-again", "--volume", "berth-tools:/tools-again"],
    }
    url = git_repo(hb.repos / "thief", {".devcontainer/devcontainer.json": json.dumps(config)})
    ws = _running(ann, "thief", repo={"url": url})
    found = ann.sh(
        ws["id"],
        "cat /steal-home/secret.txt /steal-work/secret.txt /steal-again/secret.txt "
        "/workspaces/steal/secret.txt 2>&1; touch /tools/backdoor /tools-again/backdoor; "
        "echo kept > /cache/kept; echo done",
    )
    assert marker not in found and found.strip().endswith("done")
    own = f"berth-{hb.instance}-ws-{ws['id']}-"
    for mount in _inspect(hb, docker_client, ws["id"])["Mounts"]:
        if mount["Type"] == "volume":
            assert mount["Name"].startswith(own) or (
                mount["Name"] == "berth-tools" and not mount["RW"]
            ), mount
    tools = docker_client.containers.run(
        "berth-base:bookworm",
        ["sh", "-c", "ls /t"],
        volumes={"berth-tools": {"bind": "/t", "mode": "ro"}},
        remove=True,
        network_disabled=True,
    ).decode()
    assert "backdoor" not in tools
    assert bob.sh(victim["id"], "cat ~/secret.txt").strip() == marker
    # The workspace's own named volume is its own: kept across a rebuild, gone with it.
    ann.act(ws["id"], "rebuild")
    ann.wait(ws["id"], "running", timeout=300)
    assert ann.sh(ws["id"], "cat /cache/kept").strip() == "kept"
    mine = {v.name for v in docker_client.volumes.list() if v.name.startswith(own)}
    assert any("-v-cache-" in name for name in mine)
    _gone(ann, ws["id"])
    _gone(bob, victim["id"])
    left = {v.name for v in docker_client.volumes.list() if v.name.startswith(own)}
    assert left == set()


def test_a_volume_driver_option_is_a_host_mount_and_is_refused(hb, docker_client):
    ann = hb.clients["ann"]
    config = {
        "image": "berth-base:bookworm",
        "mounts": [
            "type=volume,source=etc,target=/host-etc,volume-driver=local,"
            "volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc"
        ],
    }
    url = git_repo(hb.repos / "driver", {".devcontainer/devcontainer.json": json.dumps(config)})
    ws = ann.create("driver", repo={"url": url})
    done = ann.wait(ws["id"], "failed", "running")
    assert done["status"] == "failed" and "volume-" in done["error"], done
    assert "admin-approved" in done["error"]
    left = docker_client.containers.list(all=True, filters={"name": hb.docker_name(ws["id"])})
    assert left == []
    _gone(ann, ws["id"])


# --- finding 4: approvals belong to the template's own config ----------------------------


def test_a_repository_config_does_not_run_with_its_templates_approvals(hb, docker_client):
    from tests.services import web_session

    boss, ann = hb.clients["boss"], hb.clients["ann"]
    asks = {"image": "berth-base:bookworm", "capAdd": ["NET_ADMIN"]}
    # The legitimate use: a template whose own config needs NET_ADMIN, approved by an admin.
    url = git_repo(hb.repos / "netadmin", {"devcontainer.json": json.dumps(asks)})
    admin = web_session(hb.url, "boss")
    page = admin.get(hb.url + "/admin/templates").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    added = admin.post(
        hb.url + "/admin/templates",
        data={"csrf_token": csrf, "name": "netadmin", "git_url": url, "git_ref": "main"},
    )
    assert added.status_code in (200, 302)
    boss.call(
        "PATCH",
        "/templates/netadmin",
        200,
        json={"approvals": {"capabilities": ["NET_ADMIN"]}},
    )
    ws = _running(ann, "approved", template="netadmin")
    assert "NET_ADMIN" in _inspect(hb, docker_client, ws["id"])["HostConfig"]["CapAdd"]
    # The attack: the same ask in a repository's own config, naming that template.
    repo = git_repo(hb.repos / "borrower", {".devcontainer/devcontainer.json": json.dumps(asks)})
    borrowed = ann.create("borrower", template="netadmin", repo={"url": repo})
    done = ann.wait(borrowed["id"], "failed", "running")
    assert done["status"] == "failed" and "capability NET_ADMIN" in done["error"], done
    assert (
        docker_client.containers.list(all=True, filters={"name": hb.docker_name(done["id"])}) == []
    )
    _gone(ann, ws["id"], borrowed["id"])


# --- finding 7: builds behind the firewall ------------------------------------------------


@pytest.fixture
def host_service():
    """A service on every address of this machine that workspaces must not reach."""
    server = socket.create_server(("0.0.0.0", 0))  # noqa: S104
    reached = []

    def serve():
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            reached.append(peer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], reached
    server.close()


def _host_addresses() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if ":" not in a][:6]


def test_image_builds_do_not_reach_the_hosts_services(hb, host_service, docker_client):
    ann = hb.clients["ann"]
    port, reached = host_service
    probe = (
        "#!/bin/bash\n"
        "gateway=$(awk '$2==\"00000000\"{print $3}' /proc/net/route | head -1)\n"
        "first=$(printf '%d.%d.%d.%d' 0x${gateway:6:2} 0x${gateway:4:2} 0x${gateway:2:2}"
        " 0x${gateway:0:2})\n"
        "for ip in $first $HOSTS; do\n"
        '  if timeout 4 bash -c "exec 3<>/dev/tcp/$ip/$PORT" 2>/dev/null;'
        ' then echo "$ip REACHED"; else echo "$ip BLOCKED"; fi\n'
        "done > /reach.txt\n"
    )
    dockerfile = (
        "FROM berth-base:bookworm\nARG PORT\nARG HOSTS\nARG NONCE\n"
        "COPY probe.sh /probe.sh\nRUN bash /probe.sh\n"
    )
    config = {
        "build": {
            "dockerfile": "Dockerfile",
            "args": {
                "PORT": str(port),
                "HOSTS": " ".join(_host_addresses()),
                "NONCE": secrets.token_hex(4),
            },
        }
    }
    url = git_repo(
        hb.repos / "probe-build",
        {
            ".devcontainer/devcontainer.json": json.dumps(config),
            ".devcontainer/Dockerfile": dockerfile,
            ".devcontainer/probe.sh": probe,
        },
    )
    ws = _running(ann, "probe-build", repo={"url": url})
    lines = ann.sh(ws["id"], "cat /reach.txt").split("\n")
    assert lines and all(line.endswith("BLOCKED") for line in lines if line), lines
    assert reached == []
    build_net = docker_client.networks.get(f"berth-{hb.instance}-build")
    assert build_net.attrs["Options"]["com.docker.network.bridge.name"].startswith("berth")
    _gone(ann, ws["id"])


# --- finding 12: the control plane's files and the IDE around Berth -------------------------


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True)


def test_the_control_planes_files_are_not_for_other_local_users(hb):
    data = hb.data_dir
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(data / "berth.db").st_mode) & 0o077 == 0
    assert stat.S_IMODE(os.stat(data / "run" / "web.sock").st_mode) & 0o077 == 0
    assert _as_nobody("cat", str(data / "berth.db")).returncode != 0
    assert _as_nobody("cat", str(data / "secret_key")).returncode != 0
    connect = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX); "
        f"s.connect({str(data / 'run' / 'web.sock')!r})"
    )
    assert _as_nobody("python3", "-c", connect).returncode != 0
    assert requests.get(hb.url + "/login", timeout=10).status_code == 200  # Berth itself


def test_the_ide_is_reached_only_through_berth(hb, tools_bundle, docker_client):
    ann = hb.clients["ann"]
    ws = _running(ann, "ide-direct", template="base")
    attrs = _inspect(hb, docker_client, ws["id"])
    address = next(iter(attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    base = f"http://{address}:13337"
    secret_key = (hb.data_dir / "secret_key").read_text().strip()
    secret = ide.secret(secret_key, ws["id"], attrs["Id"])
    # code-server starts on the IDE's first open: started here as that open starts it.
    labels = attrs["Config"]["Labels"]
    launched = docker_client.containers.get(attrs["Id"]).exec_run(
        ["sh", "-c", ide.LAUNCH],
        user=labels["berth.remote_user"],
        environment={
            "BERTH_FOLDER": labels["berth.workspace_folder"],
            "BERTH_IDE_SECRET": secret,
        },
    )
    assert launched.exit_code == 0, launched.output
    wait_until(lambda: _get_status(base + "/healthz") == 200, timeout=60, what="code-server up")
    # Berth's own user, without the IDE secret: code-server's login, not the IDE.
    bare = requests.get(base + "/", allow_redirects=False, timeout=10)
    assert bare.status_code in (302, 401) and "login" in bare.headers.get("Location", "login")
    cookie = {ide.SESSION_COOKIE: secret}
    assert requests.get(base + "/", cookies=cookie, timeout=10).status_code == 200
    # Another local user cannot even connect.
    probe = f"import socket; socket.create_connection(({address!r}, 13337), 5)"
    assert _as_nobody("python3", "-c", probe).returncode != 0
    _gone(ann, ws["id"])


def _get_status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=3).status_code
    except requests.RequestException:
        return None


# --- findings 5 and 13: egress --------------------------------------------------------------


def test_the_egress_proxy_refuses_this_machine_in_every_spelling(hb, host_service):
    """Even on the template's allowlist (an admin's typo, a template admin's trick), the
    host's loopback and private addresses are refused after resolution."""
    boss, ann = hb.clients["boss"], hb.clients["ann"]
    port, reached = host_service
    spellings = [
        "127.0.0.1", "localhost", "127.1", "2130706433", "0x7f000001", "0177.0.0.1",
        socket.gethostname(), "[::1]", "[::ffff:127.0.0.1]",
    ]  # fmt: skip
    current = {t["name"]: t for t in boss.call("GET", "/templates", 200).json()}
    limits = current["agent-sandbox"]["limits"]
    names = [s for s in spellings if not s.startswith("[")]
    boss.call(
        "PATCH",
        "/templates/agent-sandbox",
        200,
        json={"limits": {**limits, "egress_allow": [f"{n}:{port}" for n in names]}},
    )
    try:
        ws = _running(ann, "egress-probe", template="agent-sandbox")
        for spelling in spellings:
            # Through the proxy even for 127.0.0.1 (NO_PROXY names it): plain, CONNECT.
            url = f"http://{spelling}:{port}/"
            plain = ann.exec(ws["id"], ["sh", "-c", f"curl -s --noproxy '' --max-time 10 {url}"])[
                "stdout"
            ]
            assert "refused" in plain or "not in the allowlist" in plain, (spelling, plain)
            code = "-o /dev/null -w '%{http_code}'"
            tunnel = ann.exec(
                ws["id"], ["sh", "-c", f"curl -s -p --noproxy '' --max-time 10 {url} {code}"]
            )["stdout"]
            assert tunnel == "000", (spelling, tunnel)  # the CONNECT was refused
        assert reached == []
    finally:
        boss.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": limits})
    _gone(ann, ws["id"])


def test_a_sandbox_reaches_its_own_proxy_and_no_other_address_on_that_port(hb, docker_client):
    ann = hb.clients["ann"]
    ws = _running(ann, "egress-rule", template="agent-sandbox")
    egress = docker_client.networks.get(f"berth-{hb.instance}-egress")
    own = egress.attrs["IPAM"]["Config"][0]["Gateway"]
    rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
    assert f"-d {own}/32 -i berth{hb.instance}eg -p tcp -m tcp --dport 3128 -j ACCEPT" in rules
    # Another address of this host on the proxy's port, as another instance's proxy is.
    other = docker_client.networks.get(f"berth-{hb.instance}-build")
    other_ip = other.attrs["IPAM"]["Config"][0]["Gateway"]
    listener = socket.create_server((other_ip, 3128))
    try:
        probe = (
            "curl -s -o /dev/null -w '%{{http_code}}' --noproxy '*' --max-time 5 http://{}:3128/"
        )
        assert ann.exec(ws["id"], ["sh", "-c", probe.format(other_ip)])["stdout"] == "000"
        # Its own proxy answers (a plain request is not a proxy request: 400).
        assert ann.exec(ws["id"], ["sh", "-c", probe.format(own)])["stdout"] == "400"
    finally:
        listener.close()
    _gone(ann, ws["id"])


# --- finding 10: a forwarded SSH agent ----------------------------------------------------


@pytest.fixture(scope="module")
def keys(hb, tmp_path_factory):
    root = tmp_path_factory.mktemp("agent-keys")
    found = {}
    for name in ("ann", "bob"):
        key = root / f"id_{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        hb.clients[name].call(
            "POST",
            "/users/me/keys",
            201,
            json={"public_key": (root / f"id_{name}.pub").read_text()},
        )
        found[name] = key
    return found


def _ssh(hb, keys, who, login, command, env=None, **kwargs):
    argv = [
        "ssh", "-F", "/dev/null", "-A",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-i", str(keys[who]), "-p", str(hb.ssh_port), f"{login}@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kwargs)


@pytest.fixture
def agent(keys):
    started = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = dict(os.environ)
    for part in started.stdout.split(";"):
        if "=" in part and part.strip().startswith("SSH_"):
            name, value = part.strip().split("=", 1)
            env[name] = value
    subprocess.run(["ssh-add", str(keys["bob"])], env=env, check=True, capture_output=True)
    yield env
    subprocess.run(["kill", env["SSH_AGENT_PID"]])


def test_an_agent_reaches_only_a_workspace_its_owner_alone_uses(hb, keys, agent):
    ann = hb.clients["ann"]
    ws = _running(ann, "agentws", template="base")
    listing = "ssh-add -l >/dev/null 2>&1 && echo AGENT || echo NONE"
    # The legitimate use: the owner, alone in the workspace, uses their agent.
    assert _ssh(hb, keys, "ann", "agentws", listing, env=agent).stdout.strip() == "AGENT"
    ann.call("PUT", f"/workspaces/{ws['id']}/shares/users/bob", 200)
    shared = _ssh(hb, keys, "ann", "agentws", listing, env=agent)
    assert shared.stdout.strip() == "NONE" and "agent forwarding is off" in shared.stderr
    # Those it is shared with never get the owner's agent, nor bring theirs in.
    bob = _ssh(hb, keys, "bob", "ann.agentws", listing, env=agent)
    assert bob.stdout.strip() == "NONE" and "agent forwarding is off" in bob.stderr
    ann.call("DELETE", f"/workspaces/{ws['id']}/shares/users/bob", 204)
    # A share made while the owner's agent is forwarded closes the way at once.
    script = f"{listing}; while [ ! -e /tmp/go ]; do sleep 0.2; done; {listing}"
    running = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-A", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-i", str(keys["ann"]),
         "-p", str(hb.ssh_port), "agentws@127.0.0.1", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=agent,
    )  # fmt: skip
    assert running.stdout.readline().strip() == "AGENT"
    ann.call("PUT", f"/workspaces/{ws['id']}/shares/users/bob", 200)
    ann.sh(ws["id"], "touch /tmp/go")
    rest, _ = running.communicate(timeout=60)
    assert rest.split() == ["NONE"]
    _gone(ann, ws["id"])
