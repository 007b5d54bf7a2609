"""What the workspace page shows beyond the row itself: the actions its state allows
the viewer, the latest job's timeline and warnings, and how to open it from a desktop
IDE. Plain data for the templates; the rules stay in app.workspaces.service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from app import authz
from app.models import Transition, User, Workspace
from app.states import JobStatus
from app.workspaces import ide_sessions, service

# What each stage of a job is called on the page (app.workspaces.lifecycle.JobLog).
STAGES = {
    "source": "Source",
    "config": "Read config",
    "build": "Build image",
    "volumes": "Volumes",
    "create": "Create container",
    "start": "Start",
    "hooks": "Lifecycle hooks",
    "dotfiles": "Dotfiles",
    "ide": "IDE",
    "stop": "Stop",
    "backup": "Back up",
    "remove": "Remove",
}
# Rebuild and delete lose something: the page asks first, naming what.
CONFIRMED = ("rebuild", "delete")


def actions(ws: Workspace, access: str | None, busy_with: list[str] | None = None) -> list[str]:
    """The actions the viewer may ask of ``ws`` now: those it is shared with may start it
    (as opening its IDE would), its managers anything its state allows."""
    if access == authz.MANAGE:
        # A workspace that failed before it had a container has nothing to stop,
        # restart or back up: starting (or rebuilding) it is what is left.
        never_made = ws.status == "failed" and not ws.container_id
        pointless = ("stop", "restart", "backup") if never_made else ()
        offered = service.offered(ws, lambda kind: True, busy_with)
        return [action for action in offered if action not in pointless]
    if access == authz.USE:
        return service.offered(ws, lambda kind: kind == "start", busy_with)
    return []


@dataclass
class Step:
    name: str
    label: str
    seconds: float | None
    state: str  # done, running, failed
    parts: list[Step]


def timeline(job: Transition | None) -> list[Step]:
    """The job's stages in the order they ran, a hook phase under its stage. A stage
    still under way is running; the last one of a failed job failed."""
    if job is None:
        return []
    if job.status == JobStatus.PENDING:
        return [Step("queued", "Waiting for the worker", None, "running", [])]
    steps: list[Step] = []
    parts: dict[str, list[Step]] = {}
    for name, seconds in json.loads(job.stages or "[]"):
        stage, _, part = name.partition(".")
        state = "running" if seconds is None else "done"
        if part:
            parts.setdefault(stage, []).append(Step(name, part, seconds, state, []))
        else:
            steps.append(Step(name, STAGES.get(stage, stage), seconds, state, []))
    for step in steps:
        step.parts = parts.get(step.name, [])
    if job.status == JobStatus.FAILED and steps:
        steps[-1].state = "failed"
    elif job.status == JobStatus.FAILED:
        steps.append(Step("failed", "Failed", None, "failed", []))
    return steps


def warnings(job: Transition | None) -> list[str]:
    """Berth's own warnings about the job (JobLog.warn), for the top of the page, each
    once; never a line of the log, which builds and hooks write."""
    if job is None:
        return []
    return list(dict.fromkeys(json.loads(job.warnings or "[]")))[:20]


@dataclass
class AppHealth:
    state: str  # ready, starting, off, stopped, unavailable, installing
    text: str


def ide_health(ws: Workspace, tools_ready: bool) -> AppHealth:
    """Where the browser IDE of ``ws`` stands, in words, with what works meanwhile."""
    state = ide_sessions.state_of(ws)
    if ws.status != "running":
        return AppHealth("off", "opening it starts the workspace, then the IDE")
    if not tools_ready and state.state != ide_sessions.READY:
        return AppHealth(
            "installing",
            "being installed on this server (the first time takes a few minutes); "
            "SSH and desktop IDEs work now",
        )
    if state.state == ide_sessions.READY:
        return AppHealth("ready", "ready")
    if state.state == ide_sessions.STARTING:
        return AppHealth("starting", "starting (a few seconds)")
    if state.state == ide_sessions.UNAVAILABLE:
        return AppHealth("unavailable", f"unavailable: {state.note}; SSH works now")
    if state.state == ide_sessions.STOPPED:
        return AppHealth("off", "not running now; opening it starts it (a few seconds)")
    return AppHealth("off", "starts when you open it (a few seconds)")


@dataclass
class Desktop:
    """How to open the workspace from VS Code or JetBrains Gateway over Berth's gateway."""

    alias: str  # the Host of the ssh config entry (what ``berth config-ssh`` writes)
    login: str
    host: str
    port: int
    folder: str
    ssh_config: str
    vscode: str
    jetbrains: str


def desktop(ws: Workspace, viewer: User, host: str, port: int, host_key_alias: str) -> Desktop:
    login = ws.name if ws.owner_id == viewer.id else f"{ws.owner.username}.{ws.name}"
    alias = f"berth-{login}"
    # The link is ssh-remote+<alias><folder>: a folder not starting with / would run
    # into the alias and could name another host.
    folder = ws.workspace_folder if (ws.workspace_folder or "").startswith("/") else "/"
    config = "\n".join(
        [
            f"Host {alias}",
            f"  HostName {host}",
            f"  Port {port}",
            f"  User {login}",
            f"  HostKeyAlias {host_key_alias}",
        ]
    )
    gateway = urlencode(
        {
            "type": "ssh",
            "deploy": "false",
            "host": host,
            "port": str(port),
            "user": login,
            "projectPath": folder,
        }
    )
    return Desktop(
        alias=alias,
        login=login,
        host=host,
        port=port,
        folder=folder,
        ssh_config=config,
        vscode=f"vscode://vscode-remote/ssh-remote+{quote(alias, safe='.-_')}{quote(folder)}",
        jetbrains=f"jetbrains-gateway://connect#{gateway}",
    )
