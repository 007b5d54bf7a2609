"""Cloning git repositories for workspaces and templates."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class CloneError(Exception):
    """git could not clone or check out; the message carries git's own last line."""


def clone(url: str, ref: str | None, target: Path) -> None:
    """Clone ``url`` at ``ref`` into ``target``, all or nothing (no half-cloned folder)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # No prompts (no terminal here) and only plain transports: never ext:: or ssh helpers.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "https:http:file"}
    steps = [["git", "clone", "--quiet", "--", url, str(partial)]]
    if ref:
        steps.append(["git", "-C", str(partial), "checkout", "--quiet", ref])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
            raise CloneError(f"cloning {url} failed: {reason}")
    partial.rename(target)
