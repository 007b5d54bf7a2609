"""When a workspace's browser IDE runs. code-server starts on the first open of the IDE's
URL, not with the workspace, and stops once nobody has had it open for the template's
``ide_idle_timeout`` (15 minutes unless set; "0": never); the workspace keeps running.
An idle workspace then holds only what its own processes need (bench/density.py).

What Berth did last is kept per container in ``Workspace.ide`` (JSON), so a new
container starts with nothing: "starting" (an open claimed the launch), "ready",
"stopped" (and why), "unavailable" (and why, and what works meanwhile). Whether the IDE
answers is always asked of code-server itself (/healthz): a state is never taken for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app import runtime as runtimes
from app.credentials import serve as credentials
from app.db import database
from app.durations import format_duration
from app.models import GitCredential, Workspace, stamp, utcnow
from app.runtime import ProvisionError, Runtime
from app.states import Status as S
from app.workspaces import automatic, ide

log = logging.getLogger("berth.ide")

OFF, STARTING, READY, STOPPED, UNAVAILABLE = "off", "starting", "ready", "stopped", "unavailable"
DEFAULT_IDLE_TIMEOUT = timedelta(minutes=15)
# A launch whose process died (a web restart) is taken over by the next open after
# this; one that failed is tried again by an open after RETRY.
LAUNCH_TAKES_AT_MOST = timedelta(seconds=ide.READY_SECONDS + 30)
RETRY = timedelta(seconds=10)
HEARTBEAT = timedelta(seconds=60)  # how often code-server looks for connections
# Kept across state changes of one container's IDE: code-server's process (its pid in
# the container and its start time, for app.ssh.ide_credentials).
KEPT = ("pid", "start")


@dataclass(frozen=True)
class IdeState:
    state: str
    since: datetime | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        return {"state": self.state, "since": stamp(self.since), "note": self.note}


def state_of(ws: Workspace) -> IdeState:
    recorded = json.loads(ws.ide or "{}")
    if not ws.container_id or recorded.get("instance") != ws.container_id:
        return IdeState(OFF)
    since = recorded.get("since")
    return IdeState(
        recorded.get("state", OFF),
        datetime.fromisoformat(since) if since else None,
        recorded.get("note"),
    )


def _record(ws: Workspace, state: str, now: datetime, note: str | None = None, **facts) -> bool:
    """Move to ``state`` if nobody else changed the record since ``ws`` was read (two web
    threads, the web and the worker); True if this call did. What is known of this
    container's code-server (``KEPT``: its process) is kept
    unless ``facts`` say otherwise."""
    read = ws.ide
    before = json.loads(read or "{}")
    kept = (
        {k: before[k] for k in KEPT if k in before}
        if before.get("instance") == ws.container_id
        else {}
    )
    text = json.dumps(
        {
            "instance": ws.container_id,
            "state": state,
            "since": now.isoformat(),
            "note": note,
            **kept,
            **facts,
        }
    )
    unchanged = Workspace.ide.is_null() if read is None else Workspace.ide == read
    moved = (
        Workspace.update(ide=text)
        .where((Workspace.id == ws.id) & (Workspace.container_id == ws.container_id) & unchanged)
        .execute()
    )
    if moved:
        ws.ide = text
    return moved == 1


def idle_timeout(ws: Workspace) -> timedelta | None:
    """The template's ``ide_idle_timeout``; None: the IDE is never stopped for idleness."""
    value = (json.loads(ws.template.limits) if ws.template else {}).get("ide_idle_timeout")
    if value in (None, ""):
        return DEFAULT_IDLE_TIMEOUT
    return automatic.idle_timeout_of(value)  # "0" or "never": never


# --- starting it: on an open -----------------------------------------------------------


def claim(ws: Workspace, now: datetime | None = None) -> bool:
    """Take the launch of the IDE of ``ws`` upon oneself (its code-server does not
    answer); False if another launch is under way or failed a moment ago."""
    now = now or utcnow()
    current = state_of(ws)
    if current.state == STARTING and now - current.since < LAUNCH_TAKES_AT_MOST:
        return False
    if current.state in (UNAVAILABLE, READY) and now - current.since < RETRY:
        return False  # failed, or answered, a moment ago
    return _record(ws, STARTING, now)


def opened(settings, ws: Workspace, now: datetime | None = None) -> IdeState:
    """Someone opens the IDE of the running ``ws`` and code-server does not answer: start
    it in the background (once, however many ask) and say where it stands. A process
    runs at most LAUNCHES launches at once, one per workspace: however a workspace
    makes its IDE look (answering now and then), it cannot make threads pile up."""
    if claim(ws, now):
        with _launching_lock:
            if ws.id in _launching:
                return state_of(ws)
            _launching.add(ws.id)
        _launcher().submit(_launch_in_background, settings, ws.id)
    return state_of(ws)


LAUNCHES = 4
_launching: set[int] = set()
_launching_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _launcher() -> ThreadPoolExecutor:
    global _pool
    with _launching_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(LAUNCHES, thread_name_prefix="ide-launch")
        return _pool


def process(ws: Workspace) -> tuple[int, str] | None:
    """code-server's pid in the container and its start time, as its launch said."""
    recorded = json.loads(ws.ide or "{}")
    if recorded.get("instance") != ws.container_id:
        return None
    pid, start = recorded.get("pid"), recorded.get("start")
    return (pid, start) if isinstance(pid, int) and isinstance(start, str) and start else None


def answered(ws: Workspace, now: datetime | None = None) -> None:
    """code-server answered: a state that says otherwise is out of date."""
    if state_of(ws).state != READY:
        _record(ws, READY, now or utcnow())


def _launch_in_background(settings, ws_id: int) -> None:
    try:
        with database.connection_context():
            ws = Workspace.get_or_none(Workspace.id == ws_id)
            if ws is None:
                return
            try:
                runtime = runtimes.connect(settings, timeout=90)
            except Exception:  # noqa: BLE001  (the engine is away: say so on the page)
                log.exception("ide: no engine to launch the IDE of workspace %s", ws_id)
                _record(ws, UNAVAILABLE, utcnow(), "the container engine did not answer")
                return
            try:
                # In path mode every workspace's pages share one origin: a page in
                # someone else's workspace could drive this IDE, so it gets no credentials.
                launch(runtime, settings.secret_key, ws, credentials=settings.apps_domain != "none")
            except Exception:
                log.exception("ide: launching the IDE of workspace %s failed", ws_id)
                _record(ws, UNAVAILABLE, utcnow(), "an internal error; see the web log")
            finally:
                runtime.close()
    finally:
        with _launching_lock:
            _launching.discard(ws_id)


def launch(
    runtime: Runtime, secret_key: str, ws: Workspace, again: bool = True, credentials: bool = True
) -> bool:
    """Start code-server in ``ws`` (already claimed) and wait until it answers; the state
    says how it went."""
    said: list[str] = []
    try:
        started = ide.launch(
            runtime,
            ws.container_id,
            ws.id,
            ws.remote_user or "root",
            ws.workspace_folder or "/",
            secret_key,
            said.append,
            env={**ws.person_env, **(ide_credentials_env(ws) if credentials else {})},
        )
    except ProvisionError:  # the container went away meanwhile
        _record(ws, UNAVAILABLE, utcnow(), "the workspace's container is gone")
        return False
    if started and ide.wait_ready(ws.address, said.append):
        _record(ws, READY, utcnow(), **ide.launched_process(said))
        return True
    if "ide: code-server already runs" in said:
        # Running but not answering (hung): start it anew, once.
        log.info("%s/%s: code-server does not answer; restarting it", ws.owner.username, ws.name)
        with contextlib.suppress(ProvisionError):
            ide.stop(runtime, ws.container_id, ws.remote_user or "root")
        if not again:
            return False
        return launch(runtime, secret_key, ws, again=False, credentials=credentials)
    for line in said:
        log.info("%s/%s: %s", ws.owner.username, ws.name, line)
    if any(ide.NOT_INSTALLED in line for line in said):
        note = (
            "the browser IDE is still being installed on this server (the first time "
            "takes a few minutes); SSH works now"
        )
    else:
        # What the workspace printed stays in the log: the note is shown to whoever may
        # open the IDE or a shared port.
        note = (
            f"code-server did not answer within {ide.READY_SECONDS:.0f} s"
            if started
            else "code-server could not start"
        ) + f" (its log in the workspace: {ide.DATA}/berth.log)"
    _record(ws, UNAVAILABLE, utcnow(), note)
    return False


def ide_credentials_env(ws: Workspace) -> dict[str, str]:
    """Where the IDE's git and ssh ask for the owner's git credentials (sockets the SSH
    gateway serves while the IDE is the owner's alone), when the owner keeps any."""
    if ws.credentials_off or (ws.template is not None and ws.template.profile == "agent"):
        return {}
    kinds = {
        row.kind
        for row in GitCredential.select(GitCredential.kind).where(GitCredential.user == ws.owner_id)
    }
    return credentials.ide_env(kinds, ws.person_env)


# --- stopping it: the sweep ------------------------------------------------------------


def idle_since(health: dict, current: IdeState) -> datetime | None:
    """Since when nobody has had the IDE open, from code-server's /healthz answer; None
    while it has a connection. code-server renews ``lastHeartbeat`` once a minute while
    anything is connected and says "alive" until then, so a connection may have lasted
    until a minute after the last renewal: idleness counts from there, never sooner."""
    if health.get("status") == "alive":
        return None
    last = health.get("lastHeartbeat")
    if isinstance(last, int | float) and not isinstance(last, bool) and last > 0:
        beat = datetime.fromtimestamp(last / 1000, UTC).replace(tzinfo=None)
        return max(beat + HEARTBEAT, current.since or beat)
    return current.since  # never opened since it was started


def stop_idle(runtime: Runtime, now: datetime | None = None) -> str:
    """Stop every IDE nobody has had open for its template's ``ide_idle_timeout``; the
    workspaces keep running. Each workspace on its own: one that fails is logged."""
    now = now or utcnow()
    done = []
    # Read all first: a write while SQLite still reads the rows in the same connection
    # would be refused at once ("database is locked") rather than wait its turn.
    for ws in list(Workspace.select().where(Workspace.status == S.RUNNING)):
        try:
            line = _stop_if_idle(runtime, ws, now)
        except Exception:  # noqa: BLE001  (one workspace must not stop the sweep)
            log.exception("ide: the IDE of workspace %s could not be checked", ws.id)
            continue
        if line:
            done.append(f"{ws.owner.username}/{ws.name}: {line}")
    return "; ".join(done) or "no idle IDE"


def _stop_if_idle(runtime: Runtime, ws: Workspace, now: datetime) -> str | None:
    current = state_of(ws)
    if current.state not in (READY, STARTING) or ws.address is None:
        return None
    timeout = idle_timeout(ws)
    if timeout is None:
        return None
    health = ide.healthz(ws.address, 2.0)
    if health is None:
        if current.state != READY:
            return None
        # Gone by itself, or too busy to answer: either way stopped for sure (the stop
        # finds nothing to do when it is gone), and the next open starts it.
        note = "code-server had exited or stopped answering"
    else:
        since = idle_since(health, current)
        if since is None or now - since < timeout:
            return None
        note = f"nobody had it open for {format_duration(timeout)}"
    # Stopped first, then recorded: a stop that fails is tried again by the next sweep.
    said = ide.stop(runtime, ws.container_id, ws.remote_user or "root")
    if not _record(ws, STOPPED, now, note):
        return None
    log.info("ide: %s/%s: %s (%s)", ws.owner.username, ws.name, said, note)
    return f"IDE stopped, {note}" if health is not None else None
