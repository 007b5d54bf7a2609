"""Writing small devcontainer folders for tests."""

import json
import subprocess
from pathlib import Path


def write(folder: Path, text: str, name=".devcontainer/devcontainer.json") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def feature(folder: Path, fid: str, **meta):
    target = folder / ".devcontainer" / fid
    target.mkdir(parents=True)
    (target / "devcontainer-feature.json").write_text(
        json.dumps({"id": fid, "version": "1.0.0", "name": fid, **meta})
    )
    (target / "install.sh").write_text("#!/bin/sh\necho installing " + fid + "\n")


def git_repo(path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for command in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", "-C", str(path), *command], check=True)
    return f"file://{path}"
