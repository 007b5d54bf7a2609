"""Dotfiles come from a repository anyone may have written: Berth clones it on the host
and hands it to the workspace as an archive. A link in it is carried as a link, never
followed on the host; a repository too large is refused; the URL gets a workspace
repository's checks, and only the account scope sets it. Each refusal sits beside the
allowed use. Installing them for real: tests/test_dotfiles.py."""

from __future__ import annotations

import io
import subprocess
import tarfile
from datetime import timedelta

import pytest

from app import accounts
from app.db import database
from app.models import AuditEvent, User
from app.workspaces import dotfiles
from tests.test_governance import call


def _clone(tmp_path, files: dict[str, str]):
    folder = tmp_path / "clone"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_links_in_the_repository_are_carried_as_links_not_followed(tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-ONLY-CONTENT")
    private = tmp_path / "host-dir"
    private.mkdir()
    (private / "key").write_text("HOST-DIR-CONTENT")
    clone = _clone(tmp_path, {".bashrc": "export A=1\n"})
    (clone / ".netrc").symlink_to(secret)
    (clone / ".ssh").symlink_to(private, target_is_directory=True)
    archive = dotfiles._archive(clone)
    assert b"HOST-ONLY-CONTENT" not in archive and b"HOST-DIR-CONTENT" not in archive
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members[".netrc"].issym() and members[".netrc"].linkname == str(secret)
    assert members[".ssh"].issym() and ".ssh/key" not in members
    assert members[".bashrc"].isfile()


def test_the_archive_names_nothing_of_this_host(tmp_path):
    """No owner of the server's (the one who unpacks it owns it), no reflog naming the
    server's user and host."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "-q", "-b", "main", str(clone)], check=True)
    (clone / ".vimrc").write_text("set nu\n")
    subprocess.run(["git", "-C", str(clone), "add", "-A"], check=True)
    commit = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t", "commit"]
    subprocess.run([*commit, "-qm", "x"], check=True)
    assert (clone / ".git" / "logs" / "HEAD").exists()
    with tarfile.open(fileobj=io.BytesIO(dotfiles._archive(clone))) as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    names = {m.name for m in members}
    assert ".vimrc" in names and ".git/HEAD" in names
    assert not any(n == ".git/logs" or n.startswith(".git/logs/") for n in names)


def test_a_repository_too_large_is_refused(tmp_path, monkeypatch):
    clone = _clone(tmp_path, {"big": "x" * 5000, "small": "y"})
    monkeypatch.setattr(dotfiles, "MAX_BYTES", 4096)
    with pytest.raises(dotfiles.TooLarge, match="larger than"):
        dotfiles._archive(clone)
    monkeypatch.setattr(dotfiles, "MAX_BYTES", 8192)
    assert dotfiles._archive(clone)


@pytest.fixture
def local_repo(app, tmp_path):
    """A repository under the folders this server allows (BERTH_LOCAL_REPO_ROOTS)."""
    root = tmp_path / "repos"
    repo = root / "dots"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    app.config["BERTH_SETTINGS"].local_repo_roots = str(root)
    return repo


@pytest.mark.parametrize(
    "url, says",
    [
        ("https://user:pass@git.example.org/dots", "may not carry credentials"),
        ("ssh://git@127.0.0.1/dots", "refused"),
        ("git@localhost:dots", "refused"),
        ("git://git.example.org/dots", "dotfiles repository"),
        ("http://git.example.org/dots", "dotfiles repository"),
        ("https://127.0.0.1/dots", "refused"),
        ("https://[::ffff:127.0.0.1]/dots", "refused"),
        ("/etc", "outside the folders this server allows"),
        ("file:///root/.ssh", "outside the folders this server allows"),
    ],
)
def test_a_dotfiles_url_gets_a_repositorys_checks(app, tokens, local_repo, url, says):
    client = app.test_client()
    kept = call(client, tokens["mia"], "PUT", "/users/me/dotfiles", json={"url": str(local_repo)})
    assert kept.status_code == 200 and kept.get_json() == {"url": str(local_repo)}
    refused = call(client, tokens["mia"], "PUT", "/users/me/dotfiles", json={"url": url})
    assert refused.status_code == 422, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_dotfiles" and says in error["message"], error
    # Nothing changed.
    assert call(client, tokens["mia"], "GET", "/users/me/dotfiles").get_json() == {
        "url": str(local_repo)
    }


def test_only_the_account_scope_sets_dotfiles_and_each_change_is_audited(app, local_repo):
    client = app.test_client()

    def token(scopes):
        with database.connection_context():
            user = accounts.find_user("mia")
            return accounts.create_token(user, "probe", timedelta(hours=1), scopes=scopes)[1]

    body = {"url": str(local_repo)}
    writer = token(["workspaces:read", "workspaces:write", "workspaces:exec"])
    refused = call(client, writer, "PUT", "/users/me/dotfiles", json=body)
    assert (
        refused.status_code == 403 and refused.get_json()["error"]["code"] == "insufficient_scope"
    )
    account = token(["account"])
    assert call(client, account, "PUT", "/users/me/dotfiles", json=body).status_code == 200
    got = call(client, account, "GET", "/users/me/dotfiles").get_json()
    assert got == {"url": str(local_repo)}
    cleared = call(client, account, "PUT", "/users/me/dotfiles", json={"url": None})
    assert cleared.get_json() == {"url": None}
    with database.connection_context():
        assert User.get(User.username == "mia").dotfiles_url is None
        changes = AuditEvent.select().where(AuditEvent.action == "user.dotfiles")
        assert [c.actor for c in changes] == ["mia", "mia"]
