"""The SSH gateway against the real OpenSSH client (ssh, scp, sftp), real workspaces
and a real ``berth serve``."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

import paramiko
import pytest
import requests

from tests import services
from tests.services import free_port, wait_until

SERVER_SCRIPT = (
    "nohup python3 -c 'import http.server,socketserver,sys; "
    's=socketserver.TCPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler); '
    "print(s.server_address[1], flush=True); s.serve_forever()' > /tmp/port.txt 2>/dev/null &"
)


@pytest.fixture(scope="module")
def gw(stack, tmp_path_factory):
    """ann and bob with SSH keys, ann's running workspace `shell` on the python template."""
    root = tmp_path_factory.mktemp("ssh")
    ids = {}
    for name in ("ann", "bob", "boss"):
        key = root / f"id_{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        stack.clients[name].call(
            "POST",
            "/users/me/keys",
            201,
            json={"public_key": (root / f"id_{name}.pub").read_text()},
        )
        ids[name] = key
    ids["stranger"] = root / "id_stranger"  # registered by nobody
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ids["stranger"])], check=True
    )
    ann = stack.clients["ann"]
    ws = ann.create("shell", template="python")
    ann.wait(ws["id"], "running")

    class Gateway:
        port = stack.ssh_port
        workspace = ws
        keys = ids
        folder = root

        def args(self, who: str = "ann", *extra: str) -> list[str]:
            return [
                "-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR",
                "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes",
                "-i", str(ids[who]),
                *extra,
            ]  # fmt: skip

        def ssh(self, login: str, command: str | None, who="ann", *extra, **kwargs):
            argv = ["ssh", *self.args(who, *extra), "-p", str(self.port), f"{login}@127.0.0.1"]
            kwargs.setdefault("timeout", 120)
            return subprocess.run(
                argv + ([command] if command else []), capture_output=True, **kwargs
            )

    return Gateway()


def test_exec_exit_codes_and_separate_streams(gw):
    done = gw.ssh("shell", "echo out; echo err >&2; pwd; id -un; exit 7")
    assert done.returncode == 7
    assert done.stdout.decode().split() == ["out", "/workspaces/shell", "dev"]
    assert done.stderr.decode().strip() == "err"
    # A command killed by a signal is reported as exit-signal (the client exits 255).
    assert gw.ssh("shell", "kill -TERM $$").returncode == 255


def test_stdin_streams_and_half_close_ends_cat(gw):
    data = os.urandom(3_000_000)
    done = gw.ssh("shell", "cat > blob.bin && sha256sum blob.bin", input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()


def test_a_command_that_echoes_a_large_input_gets_all_of_it_back(gw):
    """The session reads all the client sent at once and writes it in parts, passing on
    what the command says between them: `cat` echoing 6 MB never waits on the gateway."""
    data = os.urandom(6_000_000)
    done = gw.ssh("shell", "cat", input=data)
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_interactive_pty_session_through_tmux(gw):
    session = f"berth-ssh-{os.getpid()}"
    command = shlex.join(["ssh", *gw.args("ann", "-tt"), "-p", str(gw.port), "shell@127.0.0.1"])
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True
    )

    def screen() -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout

    def keys(*sent: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, *sent], check=True)

    try:
        wait_until(lambda: "$" in screen(), timeout=30, what="a shell prompt")
        keys("echo TERM=$TERM in $PWD", "Enter")
        wait_until(
            lambda: re.search(r"TERM=\w\S* in /workspaces/shell", screen()),
            timeout=10,
            what="the echo",
        )
        keys("stty size", "Enter")
        wait_until(lambda: "30 100" in screen(), timeout=10, what="the initial size")
        subprocess.run(
            ["tmux", "resize-window", "-t", session, "-x", "120", "-y", "40"], check=True
        )
        # The new size travels asynchronously (SIGWINCH, window-change, the engine's
        # resize): ask again until the shell sees it, as a person would.
        deadline = time.monotonic() + 15
        while "40 120" not in screen():
            assert time.monotonic() < deadline, "the new size after a resize never arrived"
            keys("clear; stty size", "Enter")
            time.sleep(1)
        keys("sleep 100", "Enter")
        time.sleep(1)
        keys("C-c")
        keys("echo after-sleep $?", "Enter")
        wait_until(lambda: "after-sleep 130" in screen(), timeout=10, what="Ctrl-C interrupting")
        keys("exit 5", "Enter")
        wait_until(
            lambda: subprocess.run(["tmux", "has-session", "-t", session]).returncode != 0,
            timeout=10,
            what="the session to end",
        )
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _scp(gw, *args: str) -> subprocess.CompletedProcess:
    argv = ["scp", "-q", *gw.args(), "-P", str(gw.port), *args]
    return subprocess.run(argv, capture_output=True, timeout=300)


def test_scp_and_sftp_move_50_mb_both_ways(gw):
    original = gw.folder / "big.bin"
    original.write_bytes(os.urandom(50 * 1024 * 1024))
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    for mode in ([], ["-O"]):  # scp over SFTP (the default), then the legacy protocol
        up = _scp(gw, *mode, str(original), "shell@127.0.0.1:up.bin")
        assert up.returncode == 0, up.stderr
        remote = gw.ssh("shell", "sha256sum up.bin").stdout.decode().split()[0]
        assert remote == digest
        back = gw.folder / "back.bin"
        down = _scp(gw, *mode, "shell@127.0.0.1:up.bin", str(back))
        assert down.returncode == 0, down.stderr
        assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
        back.unlink()
    batch = f"put {original} via-sftp.bin\nget via-sftp.bin {gw.folder}/sftp-back.bin\nls -l\n"
    done = subprocess.run(
        ["sftp", *gw.args(), "-P", str(gw.port), "-b", "-", "shell@127.0.0.1"],
        input=batch.encode(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256((gw.folder / "sftp-back.bin").read_bytes()).hexdigest() == digest


def test_local_forward_reaches_a_server_on_the_workspace_loopback(gw):
    assert gw.ssh("shell", SERVER_SCRIPT).returncode == 0
    remote_port = wait_until(
        lambda: gw.ssh("shell", "cat /tmp/port.txt").stdout.decode().strip(),
        timeout=15,
        what="the server's port",
    )
    # Not reachable from the host directly: it listens on the workspace's own loopback.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(remote_port)), 1):
        pass
    local = free_port()
    tunnel = subprocess.Popen(
        [
            "ssh",
            *gw.args("ann", "-N", "-L", f"{local}:localhost:{remote_port}"),
            "-p",
            str(gw.port),
            "shell@127.0.0.1",
        ]  # fmt: skip
    )
    try:
        listing = wait_until(
            lambda: _get(f"http://127.0.0.1:{local}/"), timeout=15, what="the forwarded port"
        )
        assert "Directory listing" in listing
    finally:
        tunnel.terminate()
        tunnel.wait(10)


def _get(url: str, **kwargs) -> str | None:
    try:
        return requests.get(url, timeout=5, **kwargs).text
    except requests.RequestException:
        return None


def test_vscode_remote_ssh_pattern_bash_on_stdin_and_socks(gw):
    socks = free_port()
    argv = ["ssh", *gw.args("ann", "-T", "-D", str(socks)), "-p", str(gw.port), "shell@127.0.0.1"]
    run_vscode_pattern(argv, socks)


def run_vscode_pattern(argv: list[str], socks: int) -> None:
    """What VS Code Remote-SSH does: ``argv`` (ssh -T -D <socks> ... host) runs bash, a
    script on stdin starts a server on 127.0.0.1 and prints its port, then HTTP goes
    through the SOCKS port."""
    setup = subprocess.Popen(
        [*argv, "bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        script = (
            "nohup python3 -u -m http.server --bind 127.0.0.1 0 > /tmp/vscode.log 2>&1 &\n"
            "for i in $(seq 50); do grep -q 'port' /tmp/vscode.log && break; sleep 0.1; done\n"
            "echo listeningOn==$(sed -n 's/.*port \\([0-9]*\\).*/\\1/p' /tmp/vscode.log)==\n"
        )
        setup.stdin.write(script.encode())
        setup.stdin.flush()
        line = setup.stdout.readline().decode()
        assert line.startswith("listeningOn=="), line
        port = int(line.strip().split("==")[1])
        proxies = {"http": f"socks5h://127.0.0.1:{socks}"}
        page = wait_until(
            lambda: _get(f"http://127.0.0.1:{port}/", proxies=proxies),
            timeout=30,
            what="the server through SOCKS",
        )
        assert "Directory listing" in page
    finally:
        setup.stdin.close()
        setup.wait(30)
    assert setup.returncode == 0


def test_agent_forwarding_lists_the_key_inside(gw):
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = dict(os.environ)
    for part in agent.stdout.split(";"):
        if "=" in part and part.strip().startswith("SSH_"):
            name, value = part.strip().split("=", 1)
            env[name] = value
    try:
        subprocess.run(["ssh-add", str(gw.keys["bob"])], env=env, check=True, capture_output=True)
        done = gw.ssh("shell", "echo $SSH_AUTH_SOCK; ssh-add -l", "ann", "-A", env=env)
        assert done.returncode == 0, done.stderr
        sock, listing = done.stdout.decode().split("\n", 1)
        assert sock.startswith("/run/berth-agent/")
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", f"{gw.keys['bob']}.pub"], capture_output=True, text=True
        ).stdout.split()[1]
        assert fingerprint in listing
    finally:
        subprocess.run(["kill", env["SSH_AGENT_PID"]])


def test_refusals_look_the_same(gw, stack):
    # bob's key on ann's workspace name (bob has none by that name), bob naming ann's
    # workspace, an unknown workspace, and a key nobody registered: all the same refusal.
    outcomes = [
        gw.ssh("shell", "true", "bob"),
        gw.ssh("ann.shell", "true", "bob"),
        gw.ssh("nothing-here", "true", "ann"),
        gw.ssh("shell", "true", "stranger"),
    ]
    for done in outcomes:
        assert done.returncode == 255
        assert b"Permission denied (publickey,keyboard-interactive)" in done.stderr
    # An admin reaches another's workspace as <owner>.<workspace>.
    assert gw.ssh("ann.shell", "id -un", "boss").stdout.decode().strip() == "dev"
    assert "refused 'ann.shell'" in stack.log()


def test_a_refused_person_is_told_why_in_words_that_say_nothing_of_others(gw, stack):
    """OpenSSH, not in batch mode, prints why after the keys failed: the same words for
    a key on no account, a key whose account has no such workspace, and a workspace
    that exists for someone else; another for no key at all."""

    # A gateway of its own: these refusals would count toward the shared one's limit.
    port = free_port()
    own = subprocess.Popen(
        [sys.executable, "-m", "app", "ssh", "--port", str(port)],
        env={**stack.env, "BERTH_SSH_FAIL_LIMIT": "100", "BERTH_PUBLIC_URL": stack.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _open(port), timeout=30, what="a gateway of its own")
        _check_refusal_words(gw, stack, port)
    finally:
        own.terminate()
        own.wait(timeout=20)


def _check_refusal_words(gw, stack, port: int) -> None:
    def told(login: str, who: str | None) -> str:
        # ssh takes an option's first value: replace the batch mode and the quiet log.
        swap = {"BatchMode=yes": "BatchMode=no", "LogLevel=ERROR": "LogLevel=INFO"}
        argv = [swap.get(a, a) for a in gw.args(who or "ann")]
        if who is None:  # no key at all
            argv = [a for a in argv if a != str(gw.keys["ann"]) and a != "-i"]
            argv += ["-o", "PubkeyAuthentication=no"]
        done = subprocess.run(
            ["ssh", *argv, "-p", str(port), f"{login}@127.0.0.1", "true"],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        assert done.returncode == 255, done
        return done.stderr.decode().replace(repr(login), "'NAME'").replace(f"{login}@", "NAME@")

    said = {
        told("shell", "stranger"),  # a key on no account
        told("shell", "bob"),  # bob has no workspace of that name
        told("ann.shell", "bob"),  # ann's, not shared with bob
        told("nothing-here", "ann"),  # exists for nobody
    }
    assert len(said) == 1, said
    (words,) = said
    assert "No workspace 'NAME' opens with the key offered" in words
    assert stack.url.rstrip("/") + "/account/" in words
    for secret in ("ann", "bob", "stranger"):  # no account named, nothing of others
        assert f"{secret}'s" not in words and f"{secret}." not in words
    assert "none was offered" in told("shell", None)


def test_a_public_key_offered_without_its_private_half_signs_nobody_in(gw, stack):
    """Anyone may offer a public key (they are published): paramiko asks Berth about it
    before any signature, and the answer must not become a login. Here OpenSSH offers
    ann's public key and then cannot sign for it: no login of ann's is recorded, and
    the failed-login count is not forgiven."""
    boss = stack.clients["boss"]

    def logins() -> list[dict]:
        found = boss.call(
            "GET", "/audit", 200, params={"action": "ssh.login", "user": "ann", "limit": 500}
        ).json()
        return [r for r in found if r["action"] == "ssh.login" and r["outcome"] == "success"]

    before = len(logins())
    forged = gw.folder / "id_forged"
    forged.write_bytes(gw.keys["stranger"].read_bytes())
    forged.chmod(0o600)
    forged.with_suffix(".pub").write_bytes(gw.keys["ann"].with_suffix(".pub").read_bytes())
    argv = [a if a != str(gw.keys["ann"]) else str(forged) for a in gw.args("ann")]
    done = subprocess.run(
        ["ssh", *argv, "-p", str(gw.port), "shell@127.0.0.1", "true"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 255, done
    assert len(logins()) == before
    # ann's own key, signed: one login recorded, by ann.
    assert gw.ssh("shell", "echo in").stdout == b"in\n"
    wait_until(lambda: len(logins()) == before + 1, timeout=30, what="ann's login recorded")


def test_sessions_opened_at_once_after_the_login_all_run(gw):
    """A client that picked AES-CTR but can do AES-GCM gets a key change to GCM right
    after its login, and sessions it opens at once meanwhile (as VS Code does, through
    one connection) are each answered: OpenSSH, and paramiko, which ends a connection on
    any channel message between the key change's first and last message (RFC 4253,
    section 7.1)."""
    control = gw.folder / f"mux-{os.getpid()}"
    argv = ["ssh", *gw.args("ann", "-S", str(control)), "-p", str(gw.port), "shell@127.0.0.1"]
    master = subprocess.Popen([*argv[:1], "-M", "-N", "-v", *argv[1:]], stderr=subprocess.PIPE)
    try:
        check = [*argv[:-1], "-O", "check", "x"]
        wait_until(
            lambda: subprocess.run(check, capture_output=True).returncode == 0,
            timeout=60,
            what="the shared connection is up",
        )
        runs = [subprocess.Popen([*argv, f"echo {n}"], stdout=subprocess.PIPE) for n in range(6)]
        outputs = {n: run.communicate(timeout=90)[0] for n, run in enumerate(runs)}
        assert outputs == {n: f"{n}\n".encode() for n in range(6)}
        assert all(run.returncode == 0 for run in runs)
    finally:
        subprocess.run(["ssh", "-S", str(control), "-O", "exit", "x"], capture_output=True)
        log = master.communicate(timeout=30)[1]
    first = log.index(b"kex: client->server cipher: aes128-ctr")
    assert b"kex: client->server cipher: aes128-gcm@openssh.com" in log[first:]

    key = paramiko.Ed25519Key.from_private_key_file(str(gw.keys["ann"]))
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", gw.port), timeout=30))
    transport.get_security_options().ciphers = ("aes128-ctr", "aes128-gcm@openssh.com")
    results = {}

    def run(n: int) -> None:
        channel = transport.open_session(timeout=30)
        channel.settimeout(60)
        channel.exec_command(f"echo {n}")
        output = channel.makefile("rb").read()
        results[n] = (channel.recv_exit_status(), output)

    try:
        transport.start_client(timeout=30)
        transport.auth_publickey("shell", key)
        sessions = [threading.Thread(target=run, args=(n,)) for n in range(6)]
        for session in sessions:
            session.start()
        for session in sessions:
            session.join(90)
        assert results == {n: (0, f"{n}\n".encode()) for n in range(6)}
        assert transport.local_cipher == "aes128-gcm@openssh.com"
    finally:
        transport.close()


def test_session_channels_on_one_connection_are_bounded(gw):
    """Each session channel is kept until it ends (paramiko alone would drop it), so one
    connection may not open them without end: past the bound the gateway refuses, and
    one closed makes room again."""
    from app.ssh.gateway import MAX_SESSIONS_PER_CONNECTION

    key = paramiko.Ed25519Key.from_private_key_file(str(gw.keys["ann"]))
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", gw.port), timeout=30))
    try:
        transport.start_client(timeout=30)
        transport.auth_publickey("shell", key)
        # All at once: the gateway counts each as it opens, not once it is taken up.
        opened, refused = [], []

        def open_one() -> None:
            try:
                opened.append(transport.open_session(timeout=30))
            except paramiko.SSHException:  # paramiko names only one of refusals at once
                refused.append(1)

        openers = [
            threading.Thread(target=open_one) for _ in range(MAX_SESSIONS_PER_CONNECTION + 6)
        ]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(60)
        assert (len(opened), len(refused)) == (MAX_SESSIONS_PER_CONNECTION, 6)
        opened.pop().close()

        def room() -> bool:
            try:
                opened.append(transport.open_session(timeout=30))
            except paramiko.ChannelException:
                return False
            return True

        wait_until(room, timeout=30, what="a closed session made room")
        opened[-1].exec_command("echo room")
        assert opened[-1].makefile("rb").read() == b"room\n"
    finally:
        transport.close()


def test_a_client_that_sends_past_a_channel_window_is_cut_off(gw):
    """paramiko would buffer all a client sends on a channel nobody reads, window or not:
    the gateway ends a connection that sends past the window it gave, and serves others."""
    from paramiko.common import cMSG_CHANNEL_DATA
    from paramiko.message import Message

    key = paramiko.Ed25519Key.from_private_key_file(str(gw.keys["ann"]))
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", gw.port), timeout=30))
    try:
        transport.start_client(timeout=30)
        transport.auth_publickey("shell", key)
        channel = transport.open_session(timeout=30)  # no command: nothing reads it
        chunk = b"x" * 32768
        for _ in range(2 * 2**21 // len(chunk)):  # twice the 2 MB window
            if not transport.is_active():
                break
            flood = Message()
            flood.add_byte(cMSG_CHANNEL_DATA)
            flood.add_int(channel.remote_chanid)
            flood.add_string(chunk)
            try:
                transport._send_message(flood)
            except (EOFError, OSError):
                break  # cut off while still sending: what is asked for
        wait_until(lambda: not transport.is_active(), timeout=30, what="the connection ended")
    finally:
        transport.close()
    assert gw.ssh("shell", "echo still").stdout == b"still\n"


def test_a_huge_answer_count_before_sign_in_ends_the_connection(gw):
    """paramiko would read 2**32-1 keyboard-interactive answers out of a short packet
    (tens of GB in the gateway) before asking Berth: the gateway ends such a connection
    at once and goes on serving others. (Never run this against a gateway without the
    bound: it would take the machine's memory.)"""
    from paramiko.common import cMSG_USERAUTH_INFO_RESPONSE
    from paramiko.message import Message

    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=30)
        attack = Message()
        attack.add_byte(cMSG_USERAUTH_INFO_RESPONSE)
        attack.add_int(0xFFFFFFFF)
        transport._send_message(attack)
        wait_until(lambda: not transport.is_active(), timeout=20, what="the connection ended")
    finally:
        transport.close()
    assert gw.ssh("shell", "echo still").stdout == b"still\n"


def test_weak_ciphers_and_macs_are_refused_and_plain_ssh_still_connects(gw):
    def ssh(*options: str) -> subprocess.CompletedProcess:
        # Without LogLevel=ERROR: the refusal is said at OpenSSH's default level.
        argv = gw.args("ann", *options)
        quiet = argv.index("LogLevel=ERROR")
        del argv[quiet - 1 : quiet + 1]
        return subprocess.run(
            ["ssh", *argv, "-p", str(gw.port), "shell@127.0.0.1", "echo plain"],
            capture_output=True,
            timeout=120,
        )

    for weak, says in (
        (["-c", "aes128-cbc"], b"no matching cipher"),
        (["-c", "3des-cbc"], b"no matching cipher"),
        (["-c", "aes128-ctr", "-m", "hmac-md5"], b"no matching MAC"),
    ):
        done = ssh(*weak)
        assert done.returncode == 255 and says in done.stderr, (weak, done.stderr)
    # OpenSSH's own preference (AES-CTR here, with an encrypt-then-MAC SHA-2) works; as
    # the client can do AES-GCM too, the gateway changes keys once more, to GCM.
    done = ssh("-v")
    assert done.stdout == b"plain\n", done.stderr[-500:]
    first = done.stderr.index(b"kex: client->server cipher: aes128-ctr MAC: hmac-sha2-256-etm")
    assert b"kex: client->server cipher: aes128-gcm@openssh.com" in done.stderr[first:]
    # A client that can only do CTR keeps it: nothing is changed that it cannot follow.
    done = ssh("-v", "-c", "aes128-ctr,aes256-ctr")
    assert done.stdout == b"plain\n", done.stderr[-500:]
    assert b"aes128-gcm" not in done.stderr.split(b"kex: client->server cipher:", 1)[1]


def test_failed_logins_are_rate_limited(gw, stack):
    port = free_port()
    limited = subprocess.Popen(
        [sys.executable, "-m", "app", "ssh", "--port", str(port)],
        env={**stack.env, "BERTH_SSH_FAIL_LIMIT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _open(port), timeout=30, what="the second gateway")
        gw.port = port
        for _ in range(3):
            assert gw.ssh("shell", "true", "stranger").returncode == 255
        # Now even the right key is turned away at connect, from this address.
        blocked = gw.ssh("shell", "true", "ann")
        assert blocked.returncode == 255
        assert b"Permission denied" not in blocked.stderr
    finally:
        gw.port = stack.ssh_port
        limited.terminate()
        log = limited.communicate(timeout=20)[1].decode()
    assert "over the failed-login limit" in log


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


def test_activity_and_ssh_command_in_the_api(gw, stack):
    ann = stack.clients["ann"]
    ws = ann.get(gw.workspace["id"])
    assert ws["ssh"] == f"ssh -p {gw.port} shell@127.0.0.1"
    assert ws["activity"]["source"] == "ssh"
    boss_view = stack.clients["boss"].get(gw.workspace["id"])
    assert boss_view["ssh"] == f"ssh -p {gw.port} ann.shell@127.0.0.1"


def test_closing_a_session_ends_what_it_started(gw):
    command = "sleep 1234 & nohup sleep 4321 > /dev/null 2>&1 & sleep 999"
    session = subprocess.Popen(
        ["ssh", *gw.args(), "-p", str(gw.port), "shell@127.0.0.1", command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: b"sleep 999" in gw.ssh("shell", "ps -eo args").stdout, timeout=15, what="sleeps"
    )
    session.kill()  # the client vanishes without a word
    session.wait()

    def remaining() -> str:
        return gw.ssh("shell", "ps -eo args").stdout.decode()

    wait_until(lambda: "sleep 999" not in remaining(), timeout=15, what="the command to end")
    left = remaining()
    assert "sleep 1234" not in left
    assert "sleep 4321" in left  # nohup: daemonised on purpose, left alone
    gw.ssh("shell", "pkill -f 'sleep 4321'")


def test_connecting_starts_a_stopped_workspace(gw, stack):
    ann = stack.clients["ann"]
    ann.act(gw.workspace["id"], "stop")
    ann.wait(gw.workspace["id"], "stopped")
    done = gw.ssh("shell", "echo started")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "started"
    assert b"starting it" in done.stderr
    history = ann.get(gw.workspace["id"])["last_transition"]
    assert (history["kind"], history["cause"]) == ("start", "ssh")


def test_config_ssh_writes_verified_host_entries_idempotently(gw, stack, tmp_path):
    config = tmp_path / "ssh" / "config"
    config.parent.mkdir()
    config.write_text("Host keep-me\n  HostName example.org\n")
    token = stack.cli("token", "create", "ann").stdout.strip()
    env = {"BERTH_URL": stack.url, "BERTH_TOKEN": token}
    argv = ["config-ssh", "--ssh-config", str(config), "--identity-file", str(gw.keys["ann"])]
    first = stack.cli(*argv, env=env)
    assert "berth-shell" in first.stdout
    once = config.read_text()
    stack.cli(*argv, env=env)
    assert config.read_text() == once  # a second run changes nothing
    assert once.startswith("Host keep-me\n  HostName example.org\n")
    assert once.count("# --- BEGIN berth") == 1
    # Strict host key checking on, with the key config-ssh fetched: no prompt, no warning.
    done = subprocess.run(
        ["ssh", "-v", "-F", str(config), "-o", "BatchMode=yes", "berth-shell", "echo via-config"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "via-config"
    # The gateway's fastest cipher, which OpenSSH would not pick by itself.
    assert b"kex: client->server cipher: aes128-gcm@openssh.com" in done.stderr
    bad = stack.cli(*argv, env={"BERTH_URL": stack.url, "BERTH_TOKEN": "nope"}, check=False)
    assert bad.returncode == 1 and "401" in bad.stderr


def test_keys_api_validates_and_removes(stack):
    bob = stack.clients["bob"]
    bad = bob.call(
        "POST", "/users/me/keys", 422, json={"public_key": "ssh-ed25519 AAAAnot-base64!"}
    )
    assert "damaged" in bad.json()["error"]["message"]
    dsa = bob.call("POST", "/users/me/keys", 422, json={"public_key": "ssh-dss AAAAB3 x"})
    assert "not supported" in dsa.json()["error"]["message"]
    listed = bob.call("GET", "/users/me/keys", 200).json()
    assert len(listed) == 1 and listed[0]["fingerprint"].startswith("SHA256:")
    again = bob.call("POST", "/users/me/keys", 422, json={"public_key": listed[0]["public_key"]})
    assert "already registered" in again.json()["error"]["message"]
    # Another user's key id is not found, not removable.
    stack.clients["ann"].call("DELETE", f"/users/me/keys/{listed[0]['id']}", 404)


def test_account_page_adds_a_key_and_the_workspace_page_shows_the_command(
    gw, stack, page, tmp_path
):
    from tests.test_dashboard import log_in

    key = tmp_path / "id_page"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "page-key", "-f", str(key)],
        check=True,
    )
    log_in(page, stack.url, "ann", "ann-password")
    page.goto(stack.url + "/account/")
    page.fill("textarea[name=public_key]", (tmp_path / "id_page.pub").read_text())
    page.click("text=Add key")
    assert "page-key" in page.locator("[data-testid=keys-table]").inner_text()
    page.fill("textarea[name=public_key]", "not a key")
    page.click("text=Add key")
    assert "Key not added" in page.content()
    page.goto(f"{stack.url}/workspaces/{gw.workspace['id']}")
    command = page.locator("[data-testid=ssh-command]").inner_text()
    assert command == f"ssh -p {stack.ssh_port} shell@127.0.0.1"
    assert "ssh" in page.locator("[data-testid=activity]").inner_text()
    # The key from the page works at once.
    login = ["ssh", *gw.args("ann"), "-i", str(key), "-p", str(stack.ssh_port), "shell@127.0.0.1"]
    done = subprocess.run([*login, "true"], capture_output=True, timeout=60)
    assert done.returncode == 0


def test_sharing_reaches_ssh_exec_and_the_ide_and_is_audited(gw, stack):
    """The role x action cells that need a real container: SSH as <owner>.<workspace>,
    exec and opening the IDE, for the owner, an admin, someone it is shared with, someone
    it is not shared with, and an auditor; revocation; the audit records of each."""
    ann, bob, boss = (stack.clients[n] for n in ("ann", "bob", "boss"))
    ws_id = gw.workspace["id"]
    if "aud" not in stack.cli("admin", "list-users").stdout:
        stack.cli(
            "admin",
            "create-user",
            "aud",
            "--role",
            "auditor",
            "--password-stdin",
            input="aud-password\n",
        )
        key = gw.folder / "id_aud"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        from tests.berthapi import Client

        stack.clients["aud"] = Client(stack.url, stack.cli("token", "create", "aud").stdout.strip())
        stack.clients["aud"].call(
            "POST",
            "/users/me/keys",
            201,
            json={"public_key": (gw.folder / "id_aud.pub").read_text()},
        )
        gw.keys["aud"] = key
    aud = stack.clients["aud"]
    ide = ann.get(ws_id)["urls"]["ide"]

    def cells() -> dict[str, tuple[bool, bool, bool]]:
        """(ssh, exec, ide) for each person."""
        found = {}
        for who, client in (("ann", ann), ("boss", boss), ("bob", bob), ("aud", aud)):
            ssh = gw.ssh("ann.shell", "id -un", who)
            ran = client.call("POST", f"/workspaces/{ws_id}/exec", json={"command": ["id", "-un"]})
            opened = services.web_session(stack.url, who).get(
                stack.url + "/apps/open", params={"to": ide}, allow_redirects=False
            )
            found[who] = (
                ssh.returncode == 0 and ssh.stdout.decode().strip() == "dev",
                ran.status_code == 200 and ran.json()["stdout"].strip() == "dev",
                opened.status_code == 302,
            )
        return found

    assert cells() == {
        "ann": (True, True, True),
        "boss": (True, True, True),
        "bob": (False, False, False),
        "aud": (False, False, False),
    }
    ann.call("PUT", f"/workspaces/{ws_id}/shares/users/bob", 200)
    assert cells()["bob"] == (True, True, True)
    # bob may use it, not manage it.
    refused = bob.call("POST", f"/workspaces/{ws_id}/stop")
    assert (
        refused.status_code == 403
        and "this needs manage access" in refused.json()["error"]["message"]
    )
    ann.call("DELETE", f"/workspaces/{ws_id}/shares/users/bob", 204)
    assert cells()["bob"] == (False, False, False)

    records = aud.call(
        "GET", "/audit", 200, params={"workspace": "ann.shell", "user": "bob", "limit": 500}
    ).json()
    by_action = {}
    for record in records:
        by_action.setdefault((record["action"], record["outcome"]), []).append(record)
    start = by_action[("ssh.session.start", "success")][0]
    end = by_action[("ssh.session.end", "success")][0]
    assert start["detail"]["command"] == end["detail"]["command"] == "id -un"
    assert (
        end["detail"]["exit_code"] == 0 and end["detail"]["started_at"] <= end["detail"]["ended_at"]
    )
    assert start["source_ip"] == "127.0.0.1"
    assert by_action[("ssh.login", "success")][0]["detail"]["shared"] is True
    exec_record = by_action[("exec", "success")][0]
    assert (
        exec_record["detail"]["command"] == ["id", "-un"]
        and exec_record["detail"]["exit_code"] == 0
    )
    assert by_action[("app.open.ide", "success")][0]["detail"]["shared"] is True
    assert ("app.open.ide", "denied") in by_action
    shares = aud.call(
        "GET", "/audit", 200, params={"workspace": "ann.shell", "action": "share."}
    ).json()
    assert [r["action"] for r in shares][:2] == ["share.remove", "share.add"]
    assert all(r["actor"] == "ann" and r["detail"]["user"] == "bob" for r in shares[:2])
    assert stack.cli("audit", "verify").returncode == 0


def test_remote_env_reaches_ssh_api_exec_and_survives_a_restart(gw, stack, base_image):
    """A config's remoteEnv (with ${containerEnv:...} resolved) and the probed user
    environment reach an SSH command and an API exec, as devcontainer exec and VS Code
    apply them, and are still there after a stop and start."""
    import json

    from tests.dcfiles import git_repo

    url = git_repo(
        stack.repos / "remote-env",
        {
            ".devcontainer/devcontainer.json": json.dumps(
                {
                    "image": base_image,
                    "containerEnv": {"BASE_DIR": "/opt"},
                    "remoteEnv": {
                        "MY_TOOL": "here",
                        "TOOL_HOME": "${containerEnv:BASE_DIR}/tool",
                        "PATH": "${containerEnv:PATH}:/opt/tool/bin",
                    },
                }
            )
        },
    )
    ann = stack.clients["ann"]
    ws = ann.wait(ann.create("envs", repo={"url": url})["id"], "running", "failed")
    assert ws["status"] == "running", ann.log(ws["id"])
    show = "echo $MY_TOOL; echo $TOOL_HOME; echo $PATH"
    try:
        for _ in ("first start", "after a restart"):
            by_api = ann.sh(ws["id"], show).split("\n")
            assert by_api[:2] == ["here", "/opt/tool"], by_api
            assert by_api[2].endswith(":/opt/tool/bin"), by_api
            by_ssh = gw.ssh("envs", show)
            assert by_ssh.returncode == 0, by_ssh.stderr
            assert by_ssh.stdout.decode().split("\n")[:3] == by_api[:3]
            ann.act(ws["id"], "stop")
            ann.wait(ws["id"], "stopped")
            ann.act(ws["id"], "start")
            ann.wait(ws["id"], "running")
    finally:
        ann.delete(ws["id"])
