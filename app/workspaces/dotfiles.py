"""A person's dotfiles in each of their new workspaces, installed as Codespaces and Coder
install them. Their dotfiles repository (the Account page, or
``PUT /api/v2/users/me/dotfiles``) is cloned by Berth, with the checks a workspace's own
repository gets, and unpacked into ``~/.config/berth/dotfiles`` as the workspace's user.
Then the first of install.sh, install, bootstrap.sh, bootstrap, script/bootstrap,
setup.sh, setup, script/setup runs there; without one, every top-level entry whose name
starts with a dot is linked into $HOME (a file already there is kept, and said).

Its output goes to the build log; a failure is a warning, never a failed workspace. It
happens once per workspace: the home volume keeps what it installed (and a mark), so a
rebuild or a start does not run it again. A workspace gets only its owner's dotfiles
(never those of the people it is shared with), and an agent sandbox none.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from app import audit
from app.models import User
from app.runtime import ProvisionError, Runtime
from app.workspaces import git, service

logger = logging.getLogger("berth.worker")
FOLDER = "$HOME/.config/berth/dotfiles"
MARK = "$HOME/.config/berth/dotfiles-installed"
MAX_BYTES = 64 * 1024 * 1024  # a dotfiles repository larger than this is refused
MAX_OUTPUT = 1024 * 1024
INSTALL_SECONDS = 300
CLONE_SECONDS = 120
INSTALLERS = (
    "install.sh",
    "install",
    "bootstrap.sh",
    "bootstrap",
    "script/bootstrap",
    "setup.sh",
    "setup",
    "script/setup",
)

_INSTALLED = f'[ -e "{MARK}" ]'

# As the workspace's user, with the archive on stdin. The mark is made once the files
# are in place: a failing install script is said once, not run again at every rebuild.
_INSTALL = rf"""
set -u
dest="{FOLDER}"
rm -rf "$dest" && mkdir -p "$dest" && tar -x -f - -C "$dest" \
    || {{ echo "could not unpack the dotfiles into $dest"; exit 90; }}
: > "{MARK}"
cd "$dest" || exit 90
for script in {" ".join(INSTALLERS)}; do
    if [ -f "$script" ]; then
        echo "running $script"
        if [ -x "$script" ]; then "./$script"; else sh "./$script"; fi
        exit $?
    fi
done
linked=0
for entry in .[!.]* ..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case "$entry" in .git|.github|.gitignore|.gitmodules|.gitattributes) continue;; esac
    if [ -e "$HOME/$entry" ] || [ -L "$HOME/$entry" ]; then
        echo "kept the existing ~/$entry"
    else
        ln -s "$dest/$entry" "$HOME/$entry" && linked=$((linked + 1))
    fi
done
echo "no install script: linked $linked dotfiles into $HOME"
"""


class TooLarge(Exception):
    pass


def choose(user: User, url: str | None, settings, *, source_ip: str | None = None) -> User:
    """Set (or, with None or "", clear) ``user``'s dotfiles repository: a public https
    repository, or a local one under BERTH_LOCAL_REPO_ROOTS, as for a workspace's own."""
    url = (url or "").strip() or None
    if url is not None:
        try:
            url, _ = service.validate_repo(
                {"url": url}, settings.repo_roots, settings.private_networks
            )
        except service.WorkspaceError as exc:
            message = exc.message.replace("repository URL", "dotfiles repository URL", 1)
            raise service.WorkspaceError(422, "invalid_dotfiles", message) from None
    if url != user.dotfiles_url:
        user.dotfiles_url = url
        user.save(only=[User.dotfiles_url])
        audit.record(
            "user.dotfiles",
            actor=user.username,
            source_ip=source_ip,
            target=f"user:{user.username}",
            url=url,
        )
    return user


def install(
    runtime: Runtime,
    container_id: str,
    url: str,
    user: str,
    env: dict[str, str],
    log: Callable[[str], None],
    *,
    scratch: Path,
    allowed=(),
    warn: Callable[[str], None] | None = None,
    auth_of: Callable[[str], git.Auth | None] = lambda url: None,
) -> None:
    """Install the dotfiles at ``url`` unless the workspace has them already; every
    problem is a ``warn``ing (a "warning:" line in ``log`` by default)."""
    warn = warn or (lambda text: log(f"warning: {text}"))
    try:
        had = runtime.exec(container_id, ["sh", "-c", _INSTALLED], user=user, env=env, timeout=30)
        if had.exit_code == 0:
            return
        log(f"dotfiles: cloning {url}")
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch, prefix="dotfiles-") as tmp:
            clone = Path(tmp) / "dotfiles"
            git.clone(
                url, None, clone, allowed, shallow=True, timeout=CLONE_SECONDS, auth=auth_of(url)
            )
            archive = _archive(clone)
        done = runtime.exec(
            container_id,
            ["sh", "-c", _INSTALL],
            user=user,
            env=env,
            stdin=archive,
            timeout=INSTALL_SECONDS,
            max_output=MAX_OUTPUT,
        )
    except (git.CloneError, TooLarge) as exc:
        warn(f"dotfiles: {exc}; the workspace starts without them")
        return
    except ProvisionError as exc:
        warn(f"dotfiles: {exc}")
        return
    except Exception as exc:  # noqa: BLE001  (a failure here never fails the workspace)
        logger.exception("dotfiles of %s", url)
        warn(f"dotfiles: they could not be installed ({type(exc).__name__})")
        return
    for line in (done.stdout + done.stderr).splitlines():
        log(f"dotfiles: {line}")
    if done.timed_out:
        warn(
            f"dotfiles: the install did not end within {INSTALL_SECONDS} s (or "
            f"printed more than {MAX_OUTPUT // 1024} KiB) and was stopped"
        )
    elif done.exit_code != 0:
        warn(
            f"dotfiles: the install ended with exit code {done.exit_code}; "
            "the workspace starts anyway"
        )


def _archive(folder: Path) -> bytes:
    """The clone as a tar, links kept as links (never followed on this host)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
            if total > MAX_BYTES:
                raise TooLarge(f"the repository is larger than {MAX_BYTES // 2**20} MiB")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in sorted(folder.iterdir()):
            tar.add(entry, arcname=entry.name, recursive=True, filter=_as_nobodys)
    return buffer.getvalue()


def _as_nobodys(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Nothing of this host in the archive: no owner (the user who unpacks it owns it),
    and not git's reflog (it names the server's user and host)."""
    if member.name == ".git/logs" or member.name.startswith(".git/logs/"):
        return None
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
