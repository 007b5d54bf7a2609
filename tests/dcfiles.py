"""Writing small devcontainer folders for tests."""

import json
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
