"""code-server in a workspace: started as the workspace's remote user in its folder,
with the devcontainer's VS Code settings and extensions, from the read-only tools bundle
at /opt/berth. It listens on the container's network and lets in only requests carrying
the workspace's IDE secret as its session cookie, which Caddy adds after Berth's
forward_auth said yes: nobody reaches the IDE around Berth's login, a local user of the
host included. The secret is derived from the instance's key and the container, so it
is never stored, and is new with every container."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable

from app.runtime import Runtime
from app.runtime.layout import CODE_SERVER, CODE_SERVER_PORT, KEEPALIVE_DIR
from app.runtime.layout import TOOLS_CURRENT as CURRENT
from app.runtime.layout import TOOLS_MARKER as MARKER
from app.runtime.layout import TOOLS_MOUNT_POINT as MOUNT_POINT

logger = logging.getLogger("berth.ide")
DATA = "$HOME/.local/share/code-server"
PIDFILE = f"{KEEPALIVE_DIR}/ide.pid"
READY_SECONDS = 60.0

# Runs as the remote user. Settings arrive in an environment variable (no quoting
# games); an extension that cannot be installed (no marketplace offline) is reported.
LAUNCH = rf"""
set -u
# A remoteEnv PATH may leave out what this script needs; the IDE keeps the person's first.
PATH="${{PATH:-}}:/usr/local/bin:/usr/bin:/bin"
if [ ! -e {CURRENT}/{MARKER} ]; then echo "berth-ide: the tools bundle is not ready"; exit 3; fi
data="{DATA}"
mkdir -p "$data/Machine"
if [ -n "${{BERTH_VSCODE_SETTINGS:-}}" ]; then
    printf '%s\n' "$BERTH_VSCODE_SETTINGS" > "$data/Machine/settings.json"
fi
for extension in ${{BERTH_VSCODE_EXTENSIONS:-}}; do
    if out=$(timeout 60 {CODE_SERVER} --install-extension "$extension" 2>&1); then
        echo "extension $extension installed"
    else
        echo "extension $extension could not be installed: $(printf '%s' "$out" | tail -n 1)"
    fi
done
# The pid file lives in the container's own tmpfs, so it goes with the container: after a
# restart a pid from before could name any new process (this script's own grep once).
# And the process must run from the bundle: one started by an older Berth without a
# password, or anything else, is not taken for the IDE.
pidfile={PIDFILE}
[ -w "${{pidfile%/*}}" ] || pidfile="$data/berth.pid"
pid=$(cat "$pidfile" 2>/dev/null || true)
case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
{MOUNT_POINT}/*)
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--auth password"; then
        echo "code-server already runs"; exit 0
    fi
    kill "$pid" 2>/dev/null; sleep 1;;
esac
HASHED_PASSWORD="$BERTH_IDE_SECRET" nohup setsid {CODE_SERVER} \
    --bind-addr 0.0.0.0:{CODE_SERVER_PORT} --auth password \
    --disable-telemetry --disable-update-check --disable-workspace-trust \
    --disable-getting-started-override --ignore-last-opened \
    "$BERTH_FOLDER" > "$data/berth.log" 2>&1 < /dev/null &
echo $! > "$pidfile"
echo "code-server started"
"""


SESSION_COOKIE = "code-server-session"


def secret(secret_key: str, ws_id: int, container_id: str) -> str:
    """The IDE's password of this container (code-server compares its session cookie
    with it; 64 hex digits is its "SHA256" form)."""
    return hmac.new(
        secret_key.encode(), f"berth-ide|{ws_id}|{container_id}".encode(), hashlib.sha256
    ).hexdigest()


def healthz(address: str, timeout: float = 2.0) -> dict | None:
    """code-server's own health answer (it does not count as use), or None."""
    try:
        with urllib.request.urlopen(  # noqa: S310 (a fixed http URL on the workspace network)
            f"http://{address}:{CODE_SERVER_PORT}/healthz", timeout=timeout
        ) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def start(
    runtime: Runtime,
    container_id: str,
    ws_id: int,
    user: str,
    folder: str,
    vscode: dict,
    log: Callable[[str], None],
    secret_key: str,
    wait: bool = True,
    env: dict[str, str] | None = None,
    address: str | None = None,
) -> bool:
    """Start code-server (idempotent) and, with ``wait``, wait until it answers; False if
    it cannot. Without ``wait`` a workspace is "running" about a second sooner: the
    first request to the IDE waits in Caddy until code-server listens
    (caddy/routes.caddy). ``env`` is the person's environment (remoteEnv included): the
    IDE's terminals and tasks inherit it. ``address``, where the caller has just recorded
    the workspace, saves asking the engine again."""
    settings = vscode.get("settings") or {}
    extensions = [e for e in vscode.get("extensions") or [] if isinstance(e, str) and e]
    done = runtime.exec(
        container_id,
        ["sh", "-c", LAUNCH],
        user=user,
        env={
            **(env or {}),
            "BERTH_FOLDER": folder,
            "BERTH_VSCODE_SETTINGS": json.dumps(settings) if settings else "",
            "BERTH_VSCODE_EXTENSIONS": " ".join(extensions),
            "BERTH_IDE_SECRET": secret(secret_key, ws_id, container_id),
        },
        timeout=60 + 70 * len(extensions),
    )
    for line in (done.stdout + done.stderr).splitlines():
        log(f"ide: {line}")
    if done.exit_code != 0:
        log("ide: the browser IDE is not available in this workspace")
        return False
    address = address or runtime.placement(container_id).address
    if not wait:
        threading.Thread(target=_watch, args=(address,), daemon=True, name="ide-ready").start()
        return True
    return wait_ready(address, log)


def _watch(address: str | None) -> None:
    """Nobody waits for an IDE started without ``wait``; one that never answers is still
    said, in the worker's log."""
    if not wait_ready(address, lambda line: None):
        logger.warning("ide: code-server at %s did not answer in %.0f s", address, READY_SECONDS)


def wait_ready(address: str | None, log: Callable[[str], None]) -> bool:
    """Wait until code-server at ``address`` answers; say if it does not in time."""
    deadline = time.monotonic() + READY_SECONDS
    while address and time.monotonic() < deadline:
        if healthz(address, timeout=1.0) is not None:
            log("ide: code-server is ready")
            return True
        time.sleep(0.5)
    log(f"ide: code-server did not answer within {READY_SECONDS:.0f} s (see {DATA}/berth.log)")
    return False
