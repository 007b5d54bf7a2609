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

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app import runtime as runtimes
from app.db import database
from app.durations import format_duration, parse_duration
from app.models import Workspace, stamp, utcnow
from app.runtime import ProvisionError, Runtime
from app.states import Status as S
from app.workspaces import ide

log = logging.getLogger("berth.ide")

OFF, STARTING, READY, STOPPED, UNAVAILABLE = "off", "starting", "ready", "stopped", "unavailable"
DEFAULT_IDLE_TIMEOUT = timedelta(minutes=15)
NEVER = ("0", "never")
# A launch whose process died (a web restart) is taken over by the next open after
# this; one that failed is tried again by an open after RETRY.
LAUNCH_TAKES_AT_MOST = timedelta(seconds=ide.READY_SECONDS + 30)
RETRY = timedelta(seconds=10)
HEARTBEAT = timedelta(seconds=60)  # how often code-server looks for connections
NOT_INSTALLED = "the tools bundle is not ready"


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


def _record(ws: Workspace, state: str, now: datetime, note: str | None = None) -> bool:
    """Move to ``state`` if nobody else changed the record since ``ws`` was read (two web
    threads, the web and the worker); True if this call did."""
    read = ws.ide
    text = json.dumps(
        {"instance": ws.container_id, "state": state, "since": now.isoformat(), "note": note}
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
    if str(value).strip().lower() in NEVER:
        return None
    return parse_duration(str(value))


# --- starting it: on an open -----------------------------------------------------------


def claim(ws: Workspace, now: datetime | None = None) -> bool:
    """Take the launch of the IDE of ``ws`` upon oneself (its code-server does not
    answer); False if another launch is under way or failed a moment ago."""
    now = now or utcnow()
    current = state_of(ws)
    if current.state == STARTING and now - current.since < LAUNCH_TAKES_AT_MOST:
        return False
    if current.state == UNAVAILABLE and now - current.since < RETRY:
        return False
    return _record(ws, STARTING, now)


def opened(settings, ws: Workspace, now: datetime | None = None) -> IdeState:
    """Someone opens the IDE of the running ``ws`` and code-server does not answer: start
    it in the background (once, however many ask) and say where it stands."""
    if claim(ws, now):
        threading.Thread(
            target=_launch_in_background,
            args=(settings, ws.id),
            daemon=True,
            name=f"ide-launch-{ws.id}",
        ).start()
    return state_of(ws)


def answered(ws: Workspace, now: datetime | None = None) -> None:
    """code-server answered: a state that says otherwise is out of date."""
    if state_of(ws).state != READY:
        _record(ws, READY, now or utcnow())


def _launch_in_background(settings, ws_id: int) -> None:
    with database.connection_context():
        ws = Workspace.get_or_none(Workspace.id == ws_id)
        if ws is None:
            return
        try:
            runtime = runtimes.connect(settings, timeout=90)
        except Exception as exc:  # noqa: BLE001  (the engine is away: say so on the page)
            _record(ws, UNAVAILABLE, utcnow(), f"the container engine did not answer ({exc})")
            return
        try:
            launch(runtime, settings.secret_key, ws)
        except Exception:
            log.exception("ide: launching the IDE of workspace %s failed", ws_id)
            _record(ws, UNAVAILABLE, utcnow(), "an internal error; see the web log")
        finally:
            runtime.close()


def launch(runtime: Runtime, secret_key: str, ws: Workspace) -> bool:
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
            env=ws.person_env,
        )
    except ProvisionError as exc:  # the container went away meanwhile
        _record(ws, UNAVAILABLE, utcnow(), f"the workspace's container is gone ({exc})")
        return False
    if started and ide.wait_ready(ws.address, said.append):
        _record(ws, READY, utcnow())
        return True
    for line in said:
        log.info("%s/%s: %s", ws.owner.username, ws.name, line)
    if any(NOT_INSTALLED in line for line in said):
        note = (
            "the browser IDE is still being installed on this server (the first time "
            "takes a few minutes); SSH works now"
        )
    elif started:
        note = f"code-server did not answer within {ide.READY_SECONDS:.0f} s"
    else:
        why = [line for line in said if not line.endswith(ide.NOT_AVAILABLE)]
        note = "code-server could not start: " + (why[-1] if why else "no output")
    _record(ws, UNAVAILABLE, utcnow(), note)
    return False


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
    health = ide.healthz(ws.address, 1.0)
    if health is None:
        if current.state == READY:  # it went away by itself; the next open starts it
            _record(ws, STOPPED, now, "code-server had exited")
        return None
    since = idle_since(health, current)
    if since is None or now - since < timeout:
        return None
    # Recorded first: an open from now on starts it again rather than trusting it.
    note = f"nobody had it open for {format_duration(timeout)}"
    if not _record(ws, STOPPED, now, note):
        return None
    said = ide.stop(runtime, ws.container_id, ws.remote_user or "root")
    log.info("ide: %s/%s: %s (%s)", ws.owner.username, ws.name, said, note)
    return f"IDE stopped, {note}"
