"""Cloning git repositories for workspaces and templates."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app import destinations
from app.credentials import agent, store
from app.credentials.vault import VaultError
from app.models import GitCredential


class CloneError(Exception):
    """git could not clone or check out; the message carries git's own last line.
    ``unresolved``: the host's name did not resolve (it may later)."""

    unresolved = False


class SignInRefused(CloneError):
    """The host turned the sign-in down, or has no such repository for it."""


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


@dataclass(frozen=True)
class Remote:
    """Where a remote repository is: its transport ("https" or "ssh"), host and port,
    and for ssh the account name (``git`` in ``git@host:path``)."""

    scheme: str
    host: str
    port: int
    user: str | None = None

    @property
    def host_key(self) -> str:
        """The host as a person's credentials name it: ``host`` or ``host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 22
        return host if self.port == default else f"{host}:{self.port}"


# scp-like syntax: [user@]host:path, where the host has no slash before the colon.
_SCP = re.compile(r"^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?!//)(?!:)(.+)$")


def remote(url: str) -> Remote | None:
    """The remote ``url`` names, or None when it is not an https or ssh URL. Raises
    CloneError when it claims to be one but is malformed or carries a password."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # urlsplit drops some (a tab), git would not: the host checked must be git's.
        raise CloneError(f"repository URL {url!r} has spaces or control characters")
    found = _SCP.match(url)
    if found and "://" not in url:
        user, host, path = found.groups()
        if path.startswith("-") or host.startswith("-"):
            raise CloneError(f"repository URL {url!r} has a path that starts with '-'")
        if host.startswith("["):
            try:
                ipaddress.IPv6Address(host.strip("[]"))
            except ValueError:
                raise CloneError(f"repository URL {url!r}: {host} is no IPv6 address") from None
        return Remote("ssh", host.strip("[]").lower(), 22, user)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CloneError(f"repository URL {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("https", "ssh"):
        return None
    if not parts.hostname or parts.hostname.startswith("-"):
        raise CloneError(f"repository URL {url!r} names no usable host")
    if parts.password is not None or (parts.scheme == "https" and parts.username):
        raise CloneError(
            "repository URLs may not carry credentials (they would be stored and logged); "
            "keep a token for the host on your Account page instead"
        )
    if parts.username and not re.fullmatch(r"[A-Za-z0-9._-]+", parts.username):
        raise CloneError(f"repository URL {url!r} has an unusable user name")
    default = 443 if parts.scheme == "https" else 22
    return Remote(parts.scheme, parts.hostname.lower(), port or default, parts.username)


def check_destination(url: str, allowed=()) -> list[str]:
    """The checked addresses of a remote repository's host (app.destinations);
    ``allowed``: private networks an admin lets Berth clone from."""
    found = remote(url)
    if found is None:
        raise CloneError(f"repository URL {url!r} must be https:// or ssh://")
    host, port = found.host, found.port
    try:
        return destinations.resolve(host, port, allowed)
    except destinations.Unresolved as exc:
        error = CloneError(f"repository {host} cannot be reached: {exc}")
        error.unresolved = True
        raise error from None
    except destinations.DestinationRefused as exc:
        raise CloneError(f"repository {host} is refused: {exc}") from None


@dataclass(frozen=True)
class Auth:
    """A person's way into a git host for one clone: a token (https) or keys an agent
    signs with (ssh); and where host keys first seen are kept (ssh)."""

    username: str | None = None
    token: str | None = None
    keys: tuple = ()  # (Ed25519PrivateKey, comment) pairs
    known_hosts: Path | None = None


# The helper answers only git's "get": the token stays in this process tree's memory.
_HELPER = (
    '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
    '"$BERTH_GIT_USERNAME" "$BERTH_GIT_TOKEN"; }; f'
)


@contextlib.contextmanager
def _agent(keys) -> Iterator[str]:
    """An SSH agent on a private socket holding ``keys`` for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="berth-agent-") as folder:
        path = os.path.join(folder, "agent.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(8)
        done = threading.Event()

        def accept() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    agent.serve(conn, lambda: list(keys))

        thread = threading.Thread(target=accept, daemon=True, name="clone-agent")
        thread.start()
        try:
            yield path
        finally:
            done.set()
            server.close()


def _ssh_command(found: Remote, address: str, auth: Auth | None) -> str:
    known = auth.known_hosts if auth and auth.known_hosts else Path("/dev/null")
    options = {
        "BatchMode": "yes",
        "HostName": address,  # the checked address: ssh never resolves the name again
        "HostKeyAlias": found.host_key,
        # A host seen for the first time is trusted and remembered; a changed key is
        # refused from then on.
        "StrictHostKeyChecking": "accept-new",
        # Quoted, and % doubled: ssh splits this option's value on spaces and expands
        # %-tokens in it.
        "UserKnownHostsFile": '"' + str(known).replace("%", "%%") + '"',
        "GlobalKnownHostsFile": "/dev/null",
        "IdentitiesOnly": "no",
        "IdentityFile": "none",
        "ProxyCommand": "none",
        "ProxyJump": "none",
        "ConnectTimeout": "20",
        "PermitLocalCommand": "no",
    }
    words = ["ssh", "-F", "/dev/null"]
    for key, value in options.items():
        words += ["-o", f"{key}={value}"]
    return " ".join(shlex.quote(word) for word in words)


def _refusal(stderr: str, found: Remote | None, auth: Auth | None) -> str | None:
    """What a person should do when the host turned the sign-in down, or None."""
    lower = stderr.lower()
    if found is None:
        return None
    host = found.host_key
    if found.scheme == "https" and (
        "authentication failed" in lower
        or "could not read username" in lower
        or "could not read password" in lower
        or "403" in lower
    ):
        if auth and auth.token:
            return (
                f"{host} refused the token kept for it (user {auth.username!r}): it may be "
                f"wrong, expired or revoked; replace it on your Account page"
            )
        return f"{host} asks for a sign-in: add a token for {host} on your Account page"
    if found.scheme == "ssh" and "permission denied" in lower:
        if auth and auth.keys:
            return (
                f"{host} refused your Berth SSH key: add its public half (your Account page) "
                f"to your account on {host}"
            )
        return f"{host} asks for an SSH key: make one on your Account page and add it there"
    if found.scheme == "ssh" and "host key verification failed" in lower:
        return f"{host}'s SSH host key is not the one Berth saw before: Berth refuses it"
    if "not found" in lower and "repository" in lower or "does not appear to be a git" in lower:
        signed = " with the credential kept for it" if auth and (auth.token or auth.keys) else ""
        return f"{host} has no such repository{signed} (or it may not be read with it)"
    return None


def clone(
    url: str,
    ref: str | None,
    target: Path,
    allowed=(),
    *,
    shallow: bool = False,
    timeout: float = 600,
    auth: Auth | None = None,
) -> str:
    """Clone ``url`` at ``ref`` into ``target``, all or nothing (no half-cloned folder);
    return the commit checked out (abbreviated hash and subject), "" when unknown.
    A remote URL is cloned from the address checked for it (git never resolves the name
    again) and, over https, without following redirects. ``auth`` signs in."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _signed_in(url, allowed, auth) as (env, pinned, found):
        return _clone(url, ref, target, partial, env, pinned, found, auth, shallow, timeout)


@contextlib.contextmanager
def _signed_in(url: str, allowed, auth: Auth | None):
    """git's environment and options for ``url``: no prompts, only the transport the URL
    names (never ext:: or other helpers), the checked address, and ``auth``."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "https:file",
        "GIT_LFS_SKIP_SMUDGE": "1",  # a filter from the host's config fetches nothing
    }
    for name in ("SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS"):
        env.pop(name, None)
    found = remote(url) if "://" in url or not url.startswith("/") else None
    pinned = []
    if found is not None and found.scheme == "https":
        address = check_destination(url, allowed)[0]
        pinned = ["-c", "http.followRedirects=false", "-c", "credential.helper="]
        if not destinations.outbound_proxy():  # through a proxy, the proxy resolves
            pinned += ["-c", f"http.curloptResolve={found.host}:{found.port}:{address}"]
        if auth and auth.token:
            pinned += ["-c", f"credential.helper={_HELPER}"]
            env.update(BERTH_GIT_USERNAME=auth.username or "git", BERTH_GIT_TOKEN=auth.token)
        yield env, pinned, found
        return
    if found is not None and found.scheme == "ssh":
        address = check_destination(url, allowed)[0]
        env["GIT_ALLOW_PROTOCOL"] = "ssh"
        env["GIT_SSH_COMMAND"] = _ssh_command(found, address, auth)
        env["GIT_SSH_VARIANT"] = "ssh"
        if auth and auth.keys:
            with _agent(auth.keys) as path:
                env["SSH_AUTH_SOCK"] = path
                yield env, pinned, found
            return
        yield env, pinned, found
        return
    yield env, pinned, None


KNOWN_HOSTS = "git_known_hosts"  # in the data folder: SSH host keys of git hosts, first seen


def auth_for(user_id: int, url: str, data_dir: Path) -> Auth | None:
    """How ``user_id`` signs in to ``url``'s host: their token for an https host, their
    Berth SSH key for an ssh one; None for a local repository or no token."""
    found = remote(url) if not url.startswith("/") else None
    if found is None:
        return None
    try:
        if found.scheme == "https":
            token = store.token_for(user_id, found.host_key)
            return Auth(username=token.username, token=token.secret) if token else None
        key = store.ssh_key(user_id)
    except VaultError as exc:
        raise CloneError(str(exc)) from None
    return Auth(keys=(key,) if key else (), known_hosts=Path(data_dir) / KNOWN_HOSTS)


def has_credential(user_id: int, url: str) -> bool:
    """Whether ``user_id`` keeps a credential ``url``'s host would be asked with."""
    found = remote(url) if not url.startswith("/") else None
    if found is None:
        return False
    where = GitCredential.user == user_id
    if found.scheme == "https":
        where &= (GitCredential.kind == "token") & (GitCredential.host == found.host_key)
    else:
        where &= GitCredential.kind == "ssh"
    return GitCredential.select().where(where).exists()


def ls_remote(url: str, allowed=(), *, auth: Auth | None = None, timeout: float = 20) -> None:
    """Ask the remote for its branches, signed in with ``auth``: raises CloneError
    naming the host when it turns the sign-in down (or the check cannot be made)."""
    with _signed_in(url, allowed, auth) as (env, pinned, found):
        try:
            done = subprocess.run(
                ["git", *pinned, "ls-remote", "--heads", "--", url],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise CloneError(
                f"{found.host_key if found else url} did not answer within {timeout:.0f} s"
            ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        refused = _refusal(done.stderr, found, auth)
        if refused:
            raise SignInRefused(refused)
        raise CloneError(f"asking {url} failed: {reason}")


def _clone(url, ref, target, partial, env, pinned, found, auth, shallow, timeout) -> str:
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
            refused = _refusal(done.stderr, found, auth)
            if refused:
                raise SignInRefused(f"cloning {url} failed: {refused}")
            if found is not None and any(word in reason.lower() for word in _UNREACHABLE):
                reason = f"{found.host_key} could not be reached over {found.scheme}"
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
