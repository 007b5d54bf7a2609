"""Attacks on a person's git credentials, each beside the allowed use: reading or
removing someone else's, a token without the account scope, lines smuggled into git's
credential protocol, the secret showing up in an answer, the database or the audit log,
an agent asked to sign with a key it does not hold, a process of another session
asking a session's sockets. The whole way on real git servers:
tests/test_git_credentials.py."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import accounts, db
from app.credentials import agent, serve, store
from app.db import database
from app.models import AuditEvent, GitCredential
from app.workspaces import git
from tests.test_governance import app, call, shared_ws, tokens  # noqa: F401  (fixtures)

SECRET = "ghp_" + "s3cr3t" * 6


def _add(client, bearer, **body):
    return call(client, bearer, "POST", "/users/me/git-credentials", json=body)


def test_a_token_is_kept_sealed_and_never_shown(app, tokens, tmp_path):  # noqa: F811
    client = app.test_client()
    made = _add(client, tokens["mia"], kind="token", host="GitHub.com:443", token=SECRET)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["host"] == "github.com" and SECRET not in made.get_data(as_text=True)
    listed = call(client, tokens["mia"], "GET", "/users/me/git-credentials")
    assert listed.status_code == 200 and SECRET not in listed.get_data(as_text=True)
    with database.connection_context():
        row = GitCredential.get()
        assert SECRET not in row.secret  # sealed
        assert store.token_for(row.user_id, "github.com").secret == SECRET
        assert not any(SECRET in (e.detail or "") for e in AuditEvent.select())
    key_file = db.credentials_key_file
    assert key_file.parent == tmp_path / "data" and key_file.stat().st_mode & 0o077 == 0
    # The database's file alone does not hold it.
    assert SECRET.encode() not in (tmp_path / "data" / "berth.db").read_bytes()


def test_only_the_account_scope_manages_them(app, tokens):  # noqa: F811
    client = app.test_client()
    with database.connection_context():
        narrow = accounts.create_token(
            accounts.find_user("mia"), "ws", timedelta(days=1), scopes=["workspaces:read"]
        )[1]
    refused = _add(client, narrow, kind="token", host="github.com", token=SECRET)
    assert refused.status_code == 403
    assert call(client, narrow, "GET", "/users/me/git-credentials").status_code == 403
    assert (
        _add(client, tokens["mia"], kind="token", host="github.com", token=SECRET).status_code
        == 201
    )


def test_nobody_reads_or_removes_someone_elses(app, tokens):  # noqa: F811
    client = app.test_client()
    mine = _add(client, tokens["mia"], kind="ssh").get_json()
    for who in ("olga", "root"):  # an admin is no exception
        assert call(client, tokens[who], "GET", "/users/me/git-credentials").get_json() == []
        gone = call(client, tokens[who], "DELETE", f"/users/me/git-credentials/{mine['id']}")
        assert gone.status_code == 404
    assert (
        call(client, tokens["mia"], "DELETE", f"/users/me/git-credentials/{mine['id']}").status_code
        == 204
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ({"kind": "token", "host": "github.com", "token": "abc\nhost=evil.example"}, "one line"),
        ({"kind": "token", "host": "github.com", "token": "abc", "username": "a\rb"}, "one line"),
        ({"kind": "token", "host": "github.com", "token": "  "}, "give a token"),
        ({"kind": "token", "host": "evil.example/path", "token": "abc"}, "not a git host"),
        ({"kind": "token", "host": "a b", "token": "abc"}, "not a git host"),
        ({"kind": "token", "host": "github.com:99999", "token": "abc"}, "not a git host"),
        ({"kind": "token", "token": "abc"}, "not a git host"),
        ({"kind": "ssh", "host": "github.com"}, "takes no host"),
        ({"kind": "password", "host": "github.com"}, "kind"),
    ],
)
def test_bad_credentials_are_refused_by_name(app, tokens, body, words):  # noqa: F811
    answer = _add(app.test_client(), tokens["mia"], **body)
    assert answer.status_code == 422, answer.get_json()
    assert words in answer.get_json()["error"]["message"]
    with database.connection_context():
        assert GitCredential.select().count() == 0


def test_the_helper_answers_only_git_asking_for_a_kept_https_host(app, tokens):  # noqa: F811
    client = app.test_client()
    _add(client, tokens["mia"], kind="token", host="git.example.com:8443", token=SECRET)
    with database.connection_context():
        mia = accounts.find_user("mia").id
        olga = accounts.find_user("olga").id
    ask = "action=get\ntimeout=900\nprotocol=https\nhost=git.example.com:8443\n"
    with database.connection_context():
        assert serve.helper_answer(mia, serve.parse_request(ask.encode())) == (
            f"username=git\npassword={SECRET}\n".encode()
        )
        for request in (
            ask.replace("action=get", "action=store"),
            ask.replace("https", "http"),  # never sent in the clear
            ask.replace(":8443", ""),  # another port is another host
            ask.replace("git.example.com", "evil.example"),
            "action=get\nprotocol=https\nhost=git.example.com:8443\nhost=x\n".replace(
                "host=git", "host=evil.example\nhost=git"
            ),  # the first value counts
        ):
            assert serve.helper_answer(mia, serve.parse_request(request.encode())) == b""
        assert serve.helper_answer(olga, serve.parse_request(ask.encode())) == b""


def _agent_call(message: bytes, keys) -> bytes:
    return agent.answer(message, lambda: keys)


def test_the_agent_signs_only_with_the_key_it_holds():
    held, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    listed = _agent_call(bytes([agent.REQUEST_IDENTITIES]), [(held, "berth-mia")])
    assert listed[0] == agent.IDENTITIES_ANSWER and struct.unpack(">I", listed[1:5])[0] == 1
    data = b"session data to sign"

    def sign_request(key) -> bytes:
        blob = agent.key_blob(key)
        return (
            bytes([agent.SIGN_REQUEST])
            + struct.pack(">I", len(blob)) + blob
            + struct.pack(">I", len(data)) + data
            + struct.pack(">I", 0)
        )  # fmt: skip

    signed = _agent_call(sign_request(held), [(held, "c")])
    assert signed[0] == agent.SIGN_RESPONSE
    signature = signed[-64:]
    held.public_key().verify(signature, data)  # raises if wrong
    assert _agent_call(sign_request(other), [(held, "c")]) == bytes([agent.FAILURE])
    assert _agent_call(bytes([agent.SIGN_REQUEST]) + b"\xff\xff", [(held, "c")]) == bytes(
        [agent.FAILURE]
    )
    # A right withdrawn meanwhile (a share added) ends the signing on an open connection.
    refused = agent.answer(sign_request(held), lambda: [(held, "c")], may_sign=lambda: False)
    assert refused == bytes([agent.FAILURE])
    # Adding, removing and locking keys are not this agent's business.
    for kind in (17, 18, 19, 22, 25):
        assert _agent_call(bytes([kind]), [(held, "c")]) == bytes([agent.FAILURE])


def test_a_session_socket_answers_only_the_session_it_belongs_to(app, tokens, tmp_path):  # noqa: F811
    client = app.test_client()
    _add(client, tokens["mia"], kind="token", host="git.example.com", token=SECRET)
    with database.connection_context():
        mia = accounts.find_user("mia").id
    allowed: set[int] = set()
    asked: list[int | None] = []

    def may_use(pid):
        asked.append(pid)
        return pid in allowed

    sockets = tmp_path / "agent"
    sockets.mkdir()

    session = serve.SessionCredentials(
        sockets, "/run/berth-agent", os.getuid(), os.getgid(), mia, may_use, with_agent=True
    )
    try:
        env = session.env({"GIT_CONFIG_COUNT": "1"})
        assert env["GIT_CONFIG_COUNT"] == "2" and env["GIT_CONFIG_KEY_1"] == "credential.helper"
        assert env["SSH_AUTH_SOCK"].startswith("/run/berth-agent/berth-agent-")
        assert "SSH_AUTH_SOCK" not in session.env({"SSH_AUTH_SOCK": "/forwarded"})
        path = sockets / session.helper_name
        assert path.stat().st_mode & 0o777 == 0o600

        def ask() -> bytes:
            # As git's credential-cache client: a reset is the end of the answer.
            data = b""
            with socket.socket(socket.AF_UNIX) as conn, contextlib.suppress(ConnectionResetError):
                conn.connect(str(path))
                conn.sendall(b"action=get\nprotocol=https\nhost=git.example.com\n")
                conn.shutdown(socket.SHUT_WR)
                while chunk := conn.recv(4096):
                    data += chunk
            return data

        assert ask() == b""  # this process is not the session's
        assert asked == [os.getpid()]  # it was asked about the real peer
        allowed.add(os.getpid())
        assert SECRET.encode() in ask()

        # A few connections at a time: one more is turned away at once, not queued.
        held = []
        for _ in range(serve.MAX_CONNECTIONS):
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(path))
            held.append(conn)
        extra = socket.socket(socket.AF_UNIX)
        extra.settimeout(5)
        extra.connect(str(path))
        with contextlib.suppress(ConnectionResetError):
            assert extra.recv(10) == b""
        extra.close()
        for conn in held:
            conn.close()
    finally:
        session.close()
    assert list(sockets.iterdir()) == []


def test_a_socket_answers_only_the_workspace_users_uid(app, tokens, tmp_path):  # noqa: F811
    """Another uid in the workspace (root through sudo, a service's user) is refused
    before the process is looked at."""
    client = app.test_client()
    _add(client, tokens["mia"], kind="token", host="git.example.com", token=SECRET)
    with database.connection_context():
        mia = accounts.find_user("mia").id
    session = serve.SessionCredentials(
        tmp_path, "/run/berth-agent", os.getuid(), os.getgid(), mia, lambda pid: True,
        with_agent=False,
    )  # fmt: skip
    session.uid = os.getuid() + 1  # as if the socket were another user's
    try:
        with socket.socket(socket.AF_UNIX) as conn, contextlib.suppress(ConnectionResetError):
            conn.connect(str(tmp_path / session.helper_name))
            conn.sendall(b"action=get\nprotocol=https\nhost=git.example.com\n")
            conn.shutdown(socket.SHUT_WR)
            assert conn.recv(4096) == b""
    finally:
        session.close()


def test_clone_urls_never_carry_a_secret_and_refusals_name_the_host():
    with pytest.raises(git.CloneError, match="may not carry credentials"):
        git.remote("https://x-access-token:abc@github.com/o/r.git")
    found = git.remote("git@GitHub.com:o/r.git")
    assert (found.scheme, found.host, found.port, found.host_key) == (
        "ssh", "github.com", 22, "github.com"
    )  # fmt: skip
    auth = git.Auth(username="git", token=SECRET)
    https = git.remote("https://git.example.com:8443/o/r.git")
    said = git._refusal(
        "fatal: Authentication failed for 'https://git.example.com:8443/'", https, auth
    )
    assert "git.example.com:8443 refused the token" in said and SECRET not in said
    said = git._refusal(
        "git@h: Permission denied (publickey).\r\nfatal: Could not read from remote repository.",
        found,
        git.Auth(keys=((Ed25519PrivateKey.generate(), "c"),)),
    )
    assert "github.com refused your Berth SSH key" in said


def test_the_clone_helper_gives_the_token_to_git_not_to_its_arguments(tmp_path, monkeypatch):
    """The token goes to git through its environment (never argv, which every local user
    can read in /proc) and only to the helper for the host being cloned."""
    monkeypatch.setattr(git.destinations, "resolve", lambda host, port, allowed=(): ["192.0.2.7"])
    seen = {}

    def run(argv, **kwargs):
        import subprocess

        seen["argv"], seen["env"] = argv, kwargs["env"]
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(git.subprocess, "run", run)
    git.ls_remote("https://git.example.com/o/r.git", auth=git.Auth(username="git", token=SECRET))
    assert not any(SECRET in word for word in seen["argv"])
    assert seen["env"]["BERTH_GIT_TOKEN"] == SECRET
    assert "http.followRedirects=false" in seen["argv"]


def test_an_agent_connection_is_served_over_a_real_socket():
    held = Ed25519PrivateKey.generate()
    left, right = socket.socketpair()
    thread = threading.Thread(target=agent.serve, args=(right, lambda: [(held, "c")]))
    thread.start()
    request = bytes([agent.REQUEST_IDENTITIES])
    left.sendall(struct.pack(">I", len(request)) + request)
    size = struct.unpack(">I", left.recv(4))[0]
    assert left.recv(size)[0] == agent.IDENTITIES_ANSWER
    left.sendall(struct.pack(">I", agent.MAX_MESSAGE + 1))  # too large: the agent hangs up
    thread.join(timeout=5)
    assert not thread.is_alive()
    left.close()
    right.close()


def test_the_owner_is_told_when_her_credentials_are_off_and_why(app, tokens, shared_ws):  # noqa: F811
    """Shared, the workspace is no longer hers alone: her page says so (and since when);
    those it is shared with are not told about her credentials at all."""
    from tests.test_web import login

    mia = app.test_client()
    login(mia, "mia", "mia-password")
    page = mia.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    assert "Git credentials" in page and "not offered here: it was shared with group team" in page
    sam = app.test_client()
    login(sam, "sam", "sam-password")
    assert "Git credentials" not in sam.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    # And a workspace nobody else has touched offers them.
    made = call(
        app.test_client(),
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "solo", "template": "base"},
    )
    page = mia.get(f"/workspaces/{made.get_json()['id']}").get_data(as_text=True)
    assert "are offered in your own SSH sessions and IDE here" in page
