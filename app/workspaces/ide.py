"""code-server in a workspace: started as the workspace's remote user in its folder,
with the devcontainer's VS Code settings and extensions, from the read-only tools bundle
at /opt/berth. It listens on the container's network and lets in only requests carrying
the workspace's IDE secret as its session cookie, which Caddy adds after Berth's
forward_auth said yes: nobody reaches the IDE around Berth's login, a local user of the
host included. The secret is derived from the instance's key and the container, so it
is never stored, and is new with every container.

The settings and extensions are put in place when the workspace starts; code-server
itself starts on the first open of the IDE and stops when nobody has had it open for a
while (app.workspaces.ide_sessions), so an idle workspace costs little memory."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable

from app.runtime import Runtime
from app.runtime.layout import CODE_SERVER, CODE_SERVER_PORT, KEEPALIVE_DIR
from app.runtime.layout import TOOLS_CURRENT as CURRENT
from app.runtime.layout import TOOLS_MARKER as MARKER
from app.runtime.layout import TOOLS_MOUNT_POINT as MOUNT_POINT

DATA = "$HOME/.local/share/code-server"
PIDFILE = f"{KEEPALIVE_DIR}/ide.pid"
READY_SECONDS = 60.0
HEALTHZ_MAX = 4096  # code-server's answer is about 50 bytes
NOT_AVAILABLE = "the browser IDE is not available in this workspace"
NOT_INSTALLED = "the tools bundle is not ready"

# Each runs as the remote user. A remoteEnv PATH may leave out what they need; the
# person's own PATH stays first.
_PREAMBLE = rf"""
set -u
PATH="${{PATH:-}}:/usr/local/bin:/usr/bin:/bin"
if [ ! -e {CURRENT}/{MARKER} ]; then echo "berth-ide: {NOT_INSTALLED}"; exit 3; fi
data="{DATA}"
mkdir -p "$data"
# The pid file lives in the container's own tmpfs, so it goes with the container: after a
# restart a pid from before could name any new process (this script's own grep once).
pidfile={PIDFILE}
[ -w "${{pidfile%/*}}" ] || pidfile="$data/berth.pid"
pid=$(cat "$pidfile" 2>/dev/null || true)
case "$pid" in ''|*[!0-9]*) pid=0;; esac
# Only a process running from the bundle is taken for the IDE; anything else a pid file
# names (an IDE of an older Berth without a password included) is not.
ours() {{
    case "$(readlink "/proc/$1/exe" 2>/dev/null)" in {MOUNT_POINT}/*) return 0;; esac
    return 1
}}
"""

# Settings arrive in an environment variable (no quoting games); an extension that
# cannot be installed (no marketplace offline) is reported, not fatal.
PREPARE = (
    _PREAMBLE
    + rf"""
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
"""
)

LAUNCH = (
    _PREAMBLE
    + rf"""
if ours "$pid"; then
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--auth password"; then
        echo "code-server already runs"
        echo "code-server pid $pid $(cut -d' ' -f22 "/proc/$pid/stat" 2>/dev/null)"
        exit 0
    fi
    kill "$pid" 2>/dev/null; sleep 1
fi
# The launch's own variables stay out of code-server's environment, which every terminal
# inherits: the IDE secret is for Caddy to hand over, not for anyone in a shell.
secret="$BERTH_IDE_SECRET" folder="$BERTH_FOLDER"
unset BERTH_IDE_SECRET BERTH_FOLDER
HASHED_PASSWORD="$secret" nohup setsid {CODE_SERVER} \
    --bind-addr 0.0.0.0:{CODE_SERVER_PORT} --auth password \
    --disable-telemetry --disable-update-check --disable-workspace-trust \
    --disable-getting-started-override --ignore-last-opened \
    "$folder" > "$data/berth.log" 2>&1 < /dev/null &
echo $! > "$pidfile"
echo "code-server started"
echo "code-server pid $! $(cut -d' ' -f22 "/proc/$!/stat" 2>/dev/null)"
"""
)

# code-server leads its own process group (setsid above): the group goes, its extension
# host and terminal host with it, and with them their memory.
STOP = (
    _PREAMBLE
    + r"""
if ! ours "$pid"; then echo "code-server does not run"; exit 0; fi
# The whole group, not only its leader: an extension host may outlive code-server.
# (No "--" before the group: dash's kill takes it for a number and fails.)
kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
tries=0
while kill -0 "-$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
    sleep 0.1; tries=$((tries + 1))
done
kill -KILL "-$pid" 2>/dev/null
rm -f "$pidfile"
echo "code-server stopped"
"""
)


SESSION_COOKIE = "code-server-session"


def secret(secret_key: str, ws_id: int, container_id: str) -> str:
    """The IDE's password of this container (code-server compares its session cookie
    with it; 64 hex digits is its "SHA256" form)."""
    return hmac.new(
        secret_key.encode(), f"berth-ide|{ws_id}|{container_id}".encode(), hashlib.sha256
    ).hexdigest()


def healthz(address: str, timeout: float = 2.0) -> dict | None:
    """code-server's own health answer (it does not count as use), or None. Whatever
    answers on that port may be the workspace's own server: the whole exchange has one
    deadline and at most HEALTHZ_MAX bytes are read."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((address, CODE_SERVER_PORT), timeout=timeout) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\nHost: code-server\r\n\r\n")
            answer = b""
            while len(answer) < HEALTHZ_MAX:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                conn.settimeout(left)
                chunk = conn.recv(HEALTHZ_MAX - len(answer))
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
            return None
        found = json.loads(body)
    except (OSError, ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def prepare(
    runtime: Runtime,
    container_id: str,
    user: str,
    vscode: dict,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> bool:
    """Write the devcontainer's VS Code settings and install its extensions, before
    anyone opens the IDE (which starts on its first open: ``launch``). Nothing to do
    costs no engine call; False if the bundle is not there. An extension that did not
    install is a ``warn``ing, in Berth's words, naming the config's extension."""
    settings = vscode.get("settings") or {}
    extensions = [e for e in vscode.get("extensions") or [] if isinstance(e, str) and e]
    if not settings and not extensions:
        return True
    done = runtime.exec(
        container_id,
        ["sh", "-c", PREPARE],
        user=user,
        env={
            **(env or {}),
            "BERTH_VSCODE_SETTINGS": json.dumps(settings) if settings else "",
            "BERTH_VSCODE_EXTENSIONS": " ".join(extensions),
        },
        timeout=30 + 70 * len(extensions),
    )
    _say(done, log)
    said = done.stdout + done.stderr
    for extension in extensions:
        if warn and f"extension {extension} could not be installed" in said:
            warn(f"the VS Code extension {extension} could not be installed (the log says why)")
    return done.exit_code == 0


def launch(
    runtime: Runtime,
    container_id: str,
    ws_id: int,
    user: str,
    folder: str,
    secret_key: str,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> bool:
    """Start code-server (idempotent) without waiting for it to listen; False if it
    cannot start. ``env`` is the person's environment (remoteEnv included): the IDE's
    terminals and tasks inherit it."""
    done = runtime.exec(
        container_id,
        ["sh", "-c", LAUNCH],
        user=user,
        env={
            **(env or {}),
            "BERTH_FOLDER": folder,
            "BERTH_IDE_SECRET": secret(secret_key, ws_id, container_id),
        },
        timeout=60,
    )
    _say(done, log)
    return done.exit_code == 0


def stop(runtime: Runtime, container_id: str, user: str) -> str:
    """Stop code-server and everything it started; the workspace keeps running. As the
    remote user: a pid file the workspace wrote can name only that user's processes."""
    done = runtime.exec(container_id, ["sh", "-c", STOP], user=user, timeout=30)
    said = (done.stdout + done.stderr).strip().splitlines()
    return said[-1] if said else f"the stop ended with exit code {done.exit_code}"


def launched_process(said: list[str]) -> dict:
    """code-server's pid in the container and its start time (clock ticks since boot),
    as the launch printed them; empty when it did not."""
    for line in said:
        words = line.removeprefix("ide: ").split()
        if (
            len(words) == 4
            and words[:2] == ["code-server", "pid"]
            and all(w.isdigit() and len(w) < 20 for w in words[2:])
        ):
            return {"pid": int(words[2]), "start": words[3]}
    return {}


def _say(done, log: Callable[[str], None]) -> None:
    for line in (done.stdout + done.stderr).splitlines():
        log(f"ide: {line}")
    if done.exit_code != 0:
        log(f"ide: {NOT_AVAILABLE}")


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
