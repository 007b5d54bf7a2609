"""A person's dotfiles in their new workspaces, on real Docker and real git: the install
script runs (or the dotfiles are linked into $HOME), its output is in the build log, a
failure is a warning, a rebuild does not run it again, and nobody else's dotfiles reach
a workspace. The refusals of hostile repositories are in tests/security/test_dotfiles.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.db import database
from app.models import User, Workspace
from app.workspaces import service
from app.workspaces.worker import Worker
from tests.test_worker import _run_next_job, instance_dir  # noqa: F401  (a fixture)


def git_repo(folder: Path, files: dict[str, str], executable=()) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name in executable:
            path.chmod(0o755)
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dotfiles"],
    ):
        subprocess.run(argv, cwd=folder, check=True)
    return folder


def create(settings, owner: str, name: str, dotfiles: str | None) -> Workspace:
    with database.connection_context():
        user = User.get(User.username == owner)
        user.dotfiles_url = dotfiles
        user.save()
        return service.create(user, name, template_name="base", data_dir=settings.data_dir)


def sh(w: Worker, ws_id: int, script: str) -> str:
    done = w.runtime.exec(w.runtime.find(ws_id).id, ["sh", "-c", script], user="dev")
    return done.stdout + done.stderr


@pytest.fixture
def w(instance_dir):  # noqa: F811  (the fixture imported above)
    return Worker(instance_dir)


def test_the_install_script_runs_once_and_its_output_is_in_the_log(instance_dir, w, tmp_path):  # noqa: F811
    repo = git_repo(
        tmp_path / "dots",
        {
            "install.sh": "#!/bin/sh\necho installing for $(id -un) in $PWD\n"
            "echo 'alias ll=\"ls -l\"' >> ~/.bashrc\ndate +%s%N >> ~/.installed-at\n",
            "setup.sh": "#!/bin/sh\necho setup.sh must not run when install.sh exists\n",
        },
        executable=("install.sh",),
    )
    ws = create(instance_dir, "wk", "dots", str(repo))
    job = _run_next_job(w, ws.id)
    assert job.status == "succeeded", job.error
    assert f"dotfiles: cloning {repo}" in job.log
    assert "dotfiles: running install.sh" in job.log
    assert "dotfiles: installing for dev in /home/dev/.config/berth/dotfiles" in job.log
    assert "setup.sh must not run" not in job.log and "warning" not in job.log
    assert 'alias ll="ls -l"' in sh(w, ws.id, "cat ~/.bashrc")
    # The clone is in the home (with its history, to pull later), owned by the person.
    assert sh(w, ws.id, "stat -c %U ~/.config/berth/dotfiles/.git") == "dev\n"
    # A rebuild keeps the home, and does not install again.
    with database.connection_context():
        service.request(Workspace.get_by_id(ws.id), "rebuild", data_dir=instance_dir.data_dir)
    again = _run_next_job(w, ws.id)
    assert again.status == "succeeded", again.error
    assert "dotfiles:" not in again.log
    assert len(sh(w, ws.id, "cat ~/.installed-at").split()) == 1


def test_without_a_script_the_dotfiles_are_linked_and_a_file_there_is_kept(
    instance_dir,  # noqa: F811
    w,
    tmp_path,
):
    repo = git_repo(
        tmp_path / "plain",
        {".gitconfig": "[user]\n\tname = Wk\n", ".bashrc": "# mine\n", ".config-x/a": "a\n"},
    )
    ws = create(instance_dir, "wk", "plain", str(repo))
    job = _run_next_job(w, ws.id)
    assert job.status == "succeeded", job.error
    home = sh(w, ws.id, "readlink ~/.gitconfig; readlink ~/.config-x; cat ~/.bashrc | head -1")
    folder = "/home/dev/.config/berth/dotfiles"
    assert home.splitlines()[:2] == [f"{folder}/.gitconfig", f"{folder}/.config-x"]
    assert home.splitlines()[2] != "# mine"  # the image's own ~/.bashrc stays
    assert "dotfiles: kept the existing ~/.bashrc" in job.log
    assert "dotfiles: no install script: linked 2 dotfiles into /home/dev" in job.log
    assert "~/.git " not in job.log and not sh(w, ws.id, "readlink ~/.git")


def test_a_failing_script_or_an_unreachable_repository_is_a_warning(instance_dir, w, tmp_path):  # noqa: F811
    repo = git_repo(
        tmp_path / "bad", {"bootstrap": "#!/bin/sh\necho half way\nexit 3\n"}, ("bootstrap",)
    )
    ws = create(instance_dir, "wk", "bad", str(repo))
    job = _run_next_job(w, ws.id)
    assert job.status == "succeeded", job.error
    assert "dotfiles: half way" in job.log
    assert "warning: dotfiles: the install ended with exit code 3" in job.log
    assert status(ws.id) == "running"

    gone = create(instance_dir, "wk", "gone", str(tmp_path / "no-such-repo"))
    job = _run_next_job(w, gone.id)
    assert job.status == "succeeded", job.error
    assert (
        "warning: dotfiles: cloning" in job.log and "the workspace starts without them" in job.log
    )
    assert status(gone.id) == "running"


def test_a_workspace_gets_only_its_owners_dotfiles(instance_dir, w, tmp_path):  # noqa: F811
    theirs = git_repo(tmp_path / "theirs", {".marker": "someone else's\n"})
    with database.connection_context():
        User.create(username="other", password_hash=None, role="member", dotfiles_url=str(theirs))
    ws = create(instance_dir, "wk", "mine", None)
    job = _run_next_job(w, ws.id)
    assert job.status == "succeeded", job.error
    assert "dotfiles" not in job.log
    assert sh(w, ws.id, "ls -a ~").count(".marker") == 0


def status(ws_id: int) -> str:
    with database.connection_context():
        return Workspace.get_by_id(ws_id).status
