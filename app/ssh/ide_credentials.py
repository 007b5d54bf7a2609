"""The owner's git credentials in their workspace's browser IDE: the SSH gateway keeps
the IDE's helper and agent sockets (app.credentials.serve, fixed names, the IDE's
environment names them) for each running workspace of a person who keeps credentials,
and answers a process only if it runs below that workspace's code-server, while the
workspace is its owner's alone (app.workspaces.strangers)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import peewee

from app.credentials import serve
from app.db import short_connection
from app.models import GitCredential, Template, Workspace
from app.runtime import ProvisionError, Runtime
from app.runtime.layout import AGENT_SOCKET_DIR
from app.states import Status as S
from app.workspaces import ide_sessions, sharing

log = logging.getLogger("berth.ssh")
INTERVAL_SECONDS = 2.0


class IdeCredentials:
    def __init__(self, runtime: Runtime, account: Callable[[str, str], object]):
        self.runtime, self.account = runtime, account
        self.open: dict[int, tuple[tuple, serve.SessionCredentials]] = {}

    def _wanted(self) -> dict[int, tuple]:
        """Workspace id -> (container, owner, kinds, user) for each that should have
        sockets."""
        kinds: dict[int, set[str]] = {}
        with short_connection():
            for row in GitCredential.select(GitCredential.user, GitCredential.kind):
                kinds.setdefault(row.user_id, set()).add(row.kind)
            if not kinds:
                return {}
            running = (
                Workspace.select(
                    Workspace.id, Workspace.container_id, Workspace.owner, Workspace.remote_user
                )
                .join(Template, peewee.JOIN.LEFT_OUTER, on=(Workspace.template == Template.id))
                .where(
                    (Workspace.status == S.RUNNING)
                    & Workspace.container_id.is_null(False)
                    & Workspace.owner.in_(list(kinds))
                    & Workspace.credentials_off.is_null()
                    & ((Template.profile.is_null()) | (Template.profile != "agent"))
                )
            )
            return {
                ws.id: (
                    ws.container_id,
                    ws.owner_id,
                    tuple(sorted(kinds[ws.owner_id])),
                    ws.remote_user or "root",
                )
                for ws in running
            }

    def sync(self) -> None:
        wanted = self._wanted()
        for ws_id in list(self.open):
            if wanted.get(ws_id) != self.open[ws_id][0]:
                self.open.pop(ws_id)[1].close()
        for ws_id, facts in wanted.items():
            if ws_id in self.open:
                continue
            host_dir = self.runtime.agent_socket_dir(ws_id)
            if host_dir is None or not host_dir.is_dir():
                continue
            try:
                account = self.account(facts[0], facts[3])
                made = serve.SessionCredentials(
                    host_dir,
                    AGENT_SOCKET_DIR,
                    account.uid,
                    account.gid,
                    facts[1],
                    lambda pid, ws_id=ws_id: self.may_use(ws_id, pid),
                    with_agent="ssh" in facts[2],
                    names=(serve.IDE_HELPER, serve.IDE_AGENT),
                )
            except (OSError, ProvisionError) as exc:
                log.warning("ssh: IDE credential sockets of workspace %s: %s", ws_id, exc)
                continue
            self.open[ws_id] = (facts, made)

    def may_use(self, ws_id: int, pid: int | None) -> bool:
        with short_connection():
            ws = Workspace.get_or_none(Workspace.id == ws_id)
            if ws is None or ws.status != S.RUNNING or ws.credentials_off or sharing.shares_of(ws):
                return False
            found = ide_sessions.process(ws)
        return found is not None and self.runtime.process_below(pid, *found)

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self.sync()
            except Exception:  # noqa: BLE001  (the next round tries again)
                log.exception("ssh: keeping the IDE credential sockets failed")
            stopping.wait(INTERVAL_SECONDS)
        for _facts, made in self.open.values():
            made.close()
        self.open.clear()
