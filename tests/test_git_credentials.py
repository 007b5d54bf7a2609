"""Private repositories on real authenticated git servers (tests/gitservers.py: git
http-backend behind Caddy with basic auth, OpenSSH with git-shell): a person's token or
Berth-made SSH key clones them, and inside their own workspace git and ssh ask Berth at
the moment of use, so a terminal can push with no secret on the workspace's disk. Others
in the same workspace (an admin's session, anyone it is shared with) get nothing."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from tests import gitservers
from tests.conftest import start_stack, stop_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with gitservers.running(tmp_path_factory.mktemp("gitservers")) as found:
        yield found


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client, base_image, servers):
    """A Berth that may clone from the test's git host (a private address an admin
    allowed) and trusts its CA, as an admin would set up for an in-house server."""
    server = start_stack(
        tmp_path_factory.mktemp("stack"),
        {"BERTH_PRIVATE_DESTINATIONS": servers.network, "GIT_SSL_CAINFO": str(servers.ca_file)},
    )
    keys = tmp_path_factory.mktemp("keys")
    server.keys = {}
    for name in ("ann", "boss"):
        key = keys / f"id_{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        server.clients[name].call(
            "POST", "/users/me/keys", 201, json={"public_key": key.with_suffix(".pub").read_text()}
        )
        server.keys[name] = key
    yield server
    stop_stack(server)


def ssh(stack, who: str, login: str, command: str, **kwargs) -> subprocess.CompletedProcess:
    argv = [
        "ssh", "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-i", str(stack.keys[who]), "-p", str(stack.ssh_port), f"{login}@127.0.0.1", command,
    ]  # fmt: skip
    kwargs.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def keep_token(client, servers, token: str | None = None) -> dict:
    """``client``'s token for the test's git host: the server's own unless given."""
    body = {"kind": "token", "host": servers.address, "token": token or servers.token}
    if token is None:
        body["username"] = servers.user
    return client.call("POST", "/users/me/git-credentials", 201, json=body).json()


def _root(stack, docker_client, ws_id: int, script: str) -> str:
    container = docker_client.containers.get(stack.docker_name(ws_id))
    return container.exec_run(["sh", "-c", script], user="root").output.decode()


def _no_secret_anywhere(stack, docker_client, ws: dict, secret: str) -> None:
    """Not in the container's files (its volumes included), its environment, the job's
    log, Berth's database or the clone Berth made."""
    found = _root(
        stack,
        docker_client,
        ws["id"],
        f"grep -rIlF {shlex.quote(secret)} / --exclude-dir=proc --exclude-dir=sys "
        "--exclude-dir=dev 2>/dev/null; echo done",
    )
    assert found.strip() == "done", found
    container = docker_client.containers.get(stack.docker_name(ws["id"]))
    assert not any(secret in entry for entry in container.attrs["Config"]["Env"] or [])
    assert secret not in stack.clients["ann"].log(ws["id"])
    on_host = subprocess.run(
        ["grep", "-rIlF", secret, str(stack.data_dir)], capture_output=True, text=True
    )
    assert on_host.stdout == "", on_host.stdout


def test_a_wrong_token_is_refused_at_create_naming_the_host(stack, servers):
    ann = stack.clients["ann"]
    servers.make_repo("refused.git", {"README.md": "private\n"})
    kept = keep_token(ann, servers, "not-the-token")
    try:
        refused = ann.call(
            "POST",
            "/workspaces",
            422,
            json={
                "name": "refused",
                "template": "base",
                "repo": {"url": servers.https_url("refused.git")},
            },
        ).json()
        assert refused["error"]["code"] == "repository_refused"
        message = refused["error"]["message"]
        assert servers.address in message and "token" in message
        names = [ws["name"] for ws in ann.call("GET", "/workspaces", 200).json()]
        assert "refused" not in names
    finally:
        ann.call("DELETE", f"/users/me/git-credentials/{kept['id']}", 204)


def test_without_a_token_the_clone_says_which_host_asks(stack, servers):
    ann = stack.clients["ann"]
    servers.make_repo("nosignin.git", {"README.md": "private\n"})
    ws = ann.create("nosignin", template="base", repo={"url": servers.https_url("nosignin.git")})
    done = ann.wait(ws["id"], "running", "failed")
    assert done["status"] == "failed"
    assert f"{servers.address} asks for a sign-in" in done["error"]
    ann.delete(ws["id"])


def test_a_private_https_repository_pushes_from_its_owners_terminal(stack, servers, docker_client):
    ann = stack.clients["ann"]
    bare = servers.make_repo("app.git", {"README.md": "private app\n"})
    kept = keep_token(ann, servers)
    assert "token" not in kept or kept.get("token") is None
    listed = ann.call("GET", "/users/me/git-credentials", 200).text
    assert servers.token not in listed

    # Her dotfiles are private too, on the same host.
    servers.make_repo("dots.git", {".berthrc": "from private dotfiles\n"})
    ann.call("PUT", "/users/me/dotfiles", 200, json={"url": servers.https_url("dots.git")})
    ws = ann.create("app", template="base", repo={"url": servers.https_url("app.git")})
    done = ann.wait(ws["id"], "running", "failed")
    ann.call("PUT", "/users/me/dotfiles", 200, json={"url": None})
    assert done["status"] == "running", ann.log(ws["id"])
    log = ann.log(ws["id"])
    assert "cloned: " in log and "linked 1 dotfiles" in log, log
    assert ann.sh(ws["id"], "cat ~/.berthrc") == "from private dotfiles\n"

    # The CA of this in-house server is no secret; the workspace needs it to talk https.
    ssh(stack, "ann", "app", "cat > /tmp/ca.crt", input=servers.ca_file.read_text())
    push = ssh(
        stack,
        "ann",
        "app",
        "git config --global http.sslCAInfo /tmp/ca.crt && cat README.md && "
        "git -c user.name=ann -c user.email=ann@example.org commit -q --allow-empty "
        "-m 'from the workspace' && GIT_TERMINAL_PROMPT=0 git push -q origin HEAD:main",
    )
    assert push.returncode == 0, push.stderr
    assert push.stdout.startswith("private app")
    assert servers.log(bare)[0] == "from the workspace"
    _no_secret_anywhere(stack, docker_client, ws, servers.token)

    # Removed in Berth, it is gone at once: the same push is turned down.
    ann.call("DELETE", f"/users/me/git-credentials/{kept['id']}", 204)
    again = ssh(
        stack,
        "ann",
        "app",
        "git -c user.name=ann -c user.email=ann@example.org commit -q --allow-empty -m again"
        " && GIT_TERMINAL_PROMPT=0 git push -q origin HEAD:main",
    )
    assert again.returncode != 0
    assert "could not read Username" in again.stderr
    assert servers.log(bare)[0] == "from the workspace"


def test_only_the_owners_own_sessions_get_the_credentials(stack, servers, docker_client):
    ann = stack.clients["ann"]
    servers.make_repo("shared.git", {"README.md": "shared\n"})
    kept = keep_token(ann, servers)
    ws = ann.create("shared", template="base", repo={"url": servers.https_url("shared.git")})
    assert ann.wait(ws["id"], "running", "failed")["status"] == "running", ann.log(ws["id"])
    fill = (
        f"printf 'protocol=https\\nhost={servers.address}\\n\\n' | GIT_TERMINAL_PROMPT=0 "
        "git {config} credential fill"
    )
    # The owner's session: the helper answers.
    mine = ssh(stack, "ann", "shared", fill.format(config=""))
    assert f"password={servers.token}" in mine.stdout, mine.stderr

    # While one session of hers is open, another process in the same workspace (the
    # same user inside) that learned its socket's name asks it directly: refused, for
    # it does not run below that session's command, even in another session of hers.
    holder = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
         "-i", str(stack.keys["ann"]), "-p", str(stack.ssh_port), "shared@127.0.0.1",
         'echo "$GIT_CONFIG_VALUE_0"; sleep 60'],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        helper = holder.stdout.readline().strip()
        assert helper.startswith("cache --socket /run/berth-agent/git-"), helper
        asked = f"-c credential.helper={shlex.quote(helper)}"
        # (Without the helper her own session names: only the other session's.)
        other = ssh(
            stack, "ann", "shared", "export GIT_CONFIG_COUNT=0; " + fill.format(config=asked)
        )
        assert servers.token not in other.stdout and other.returncode != 0

        # An admin signs in to her workspace: gets nothing, not even through her socket.
        theirs = ssh(stack, "boss", "ann.shared", "env")
        assert "GIT_CONFIG" not in theirs.stdout and "berth-agent/git-" not in theirs.stdout
        stolen = ssh(stack, "boss", "ann.shared", fill.format(config=asked))
        assert servers.token not in stolen.stdout and stolen.returncode != 0
    finally:
        holder.kill()
        holder.wait()
    # And from then on the workspace is not hers alone (the admin could have left a
    # git hook or a shell rc file behind): her own sessions get no helper either.
    after = ssh(stack, "ann", "shared", "env")
    assert after.returncode == 0 and "GIT_CONFIG" not in after.stdout
    ann.call("DELETE", f"/users/me/git-credentials/{kept['id']}", 204)
    ann.delete(ws["id"])


def test_an_ssh_repository_through_berths_key_and_agent(stack, servers, docker_client):
    ann = stack.clients["ann"]
    bare = servers.make_repo("viassh.git", {"README.md": "over ssh\n"})
    key = ann.call("POST", "/users/me/git-credentials", 201, json={"kind": "ssh"}).json()
    assert key["public_key"].startswith("ssh-ed25519 ") and key["fingerprint"].startswith("SHA256:")
    servers.authorized_keys.write_text(key["public_key"] + "\n")

    ws = ann.create("viassh", template="base", repo={"url": servers.ssh_url("viassh.git")})
    done = ann.wait(ws["id"], "running", "failed")
    assert done["status"] == "running", ann.log(ws["id"])

    push = ssh(
        stack,
        "ann",
        "viassh",
        "ssh-add -l && git -c user.name=ann -c user.email=ann@example.org commit -q "
        "--allow-empty -m 'pushed over ssh' && GIT_SSH_COMMAND='ssh -o "
        "StrictHostKeyChecking=accept-new' git push -q origin HEAD:main",
    )
    assert push.returncode == 0, push.stderr
    assert key["fingerprint"] in push.stdout
    assert servers.log(bare)[0] == "pushed over ssh"
    private = _root(stack, docker_client, ws["id"], "ls -a /home/*/.ssh 2>/dev/null; echo end")
    assert "id_" not in private, private

    # Another key on the server: the host turns Berth's down, and create says so.
    servers.authorized_keys.write_text("")
    refused = ann.call(
        "POST",
        "/workspaces",
        422,
        json={"name": "nokey", "template": "base", "repo": {"url": servers.ssh_url("viassh.git")}},
    ).json()
    assert refused["error"]["code"] == "repository_refused"
    assert servers.address in refused["error"]["message"]
    ann.call("DELETE", f"/users/me/git-credentials/{key['id']}", 204)
