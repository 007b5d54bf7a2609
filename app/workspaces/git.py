"""Cloning git repositories for workspaces and templates."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from app import destinations


class CloneError(Exception):
    """git could not clone or check out; the message carries git's own last line.
    ``unresolved``: the host's name did not resolve (it may later)."""

    unresolved = False


# What git says when it could not reach a server: told apart, these would let anyone
# probe which hosts and ports answer, so they all become one sentence.
_UNREACHABLE = (
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "timed out",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "ssl",
    "gnutls",
    "empty reply",
    "recv failure",
)


def check_destination(url: str, allowed=()) -> list[str]:
    """The checked addresses of an https repository's host (app.destinations);
    ``allowed``: private networks an admin lets Berth clone from."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 443
    except ValueError as exc:
        raise CloneError(f"repository URL {url!r} is not a URL ({exc})") from None
    if parts.scheme != "https" or not host:
        raise CloneError(f"repository URL {url!r} must be https://")
    try:
        return destinations.resolve(host, port, allowed)
    except destinations.Unresolved as exc:
        error = CloneError(f"repository {host} cannot be reached: {exc}")
        error.unresolved = True
        raise error from None
    except destinations.DestinationRefused as exc:
        raise CloneError(f"repository {host} is refused: {exc}") from None


def clone(
    url: str,
    ref: str | None,
    target: Path,
    allowed=(),
    *,
    shallow: bool = False,
    timeout: float = 600,
) -> str:
    """Clone ``url`` at ``ref`` into ``target``, all or nothing (no half-cloned folder);
    return the commit checked out (abbreviated hash and subject), "" when unknown.
    An https URL is cloned from the address checked for it (git never resolves the name
    again) and without following redirects."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # No prompts (no terminal here) and only plain transports: never ext:: or ssh helpers.
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "https:file",
        "GIT_LFS_SKIP_SMUDGE": "1",  # a filter from the host's config fetches nothing
    }
    pinned = []
    if url.startswith("https://"):
        parts = urlsplit(url)
        address = check_destination(url, allowed)[0]
        pinned = ["-c", "http.followRedirects=false"]
        if not destinations.outbound_proxy():  # through a proxy, the proxy resolves
            pinned += ["-c", f"http.curloptResolve={parts.hostname}:{parts.port or 443}:{address}"]
    # Shallow: only the files, not the history (a dotfiles repository, say).
    depth = ["--depth", "1", "--single-branch", "--no-tags"] if shallow and not ref else []
    steps = [["git", *pinned, "clone", "--quiet", *depth, "--", url, str(partial)]]
    if ref:
        steps.append(["git", "-C", str(partial), "checkout", "--quiet", ref])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise CloneError(f"cloning {url} took longer than {timeout:.0f} s") from None
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
            if pinned and any(word in reason.lower() for word in _UNREACHABLE):
                reason = f"{urlsplit(url).hostname} could not be reached over https"
            raise CloneError(f"cloning {url} failed: {reason}")
    # For the build log: which commit the workspace starts from. The folder's git config
    # is git's own from the clone (a remote cannot set it), so reading it runs nothing.
    head = subprocess.run(
        ["git", "-C", str(partial), "log", "-1", "--no-show-signature", "--format=%h %s"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    partial.rename(target)
    return head.stdout.strip()[:200] if head.returncode == 0 else ""
