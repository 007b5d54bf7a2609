"""Telling an owner, by email, that Berth will soon stop or delete their workspace by
itself (its time to live ending, a long stop, the template's longest run). The page
says it already (app.workspaces.automatic's warnings); the email reaches them away
from it. Each warning is sent once: its hash is kept on the workspace, and a changed
deadline (an extended time to live) is a new warning."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from app import audit, mail
from app.config import Settings
from app.models import Workspace
from app.workspaces.lifecycle import is_agent

log = logging.getLogger("berth.notices")

# After a failed send, wait this long before trying again (the sweep runs every 30 s;
# a mail server that is down must not slow every sweep by its timeout). A server that
# failed holds up all mail; an address it refused holds up only that workspace's.
RETRY_AFTER = timedelta(minutes=5)
_failed_at: datetime | None = None
_refused_at: dict[int, datetime] = {}


def tell_owner(settings: Settings, ws: Workspace, warnings: list[str], now: datetime) -> bool:
    """Mail the owner of ``ws`` its warnings unless they were sent already; True if sent."""
    global _failed_at
    to = ws.owner.email
    # Agent sandboxes live by their time to live: its end is the plan, not news.
    if not (warnings and mail.configured(settings) and to) or is_agent(ws):
        return False
    key = hashlib.sha256("\n".join(warnings).encode()).hexdigest()[:64]
    if ws.notified == key:
        return False
    if _failed_at is not None and now - _failed_at < RETRY_AFTER:
        return False
    refused = _refused_at.get(ws.id)
    if refused is not None and now - refused < RETRY_AFTER:
        return False
    deleted = any("deleted" in warning for warning in warnings)
    link = f"{settings.public_url.rstrip('/')}/workspaces/{ws.id}"
    body = "\n\n".join(
        [
            f"Hello {ws.owner.username},",
            *warnings,
            f"Workspace: {ws.owner.username}/{ws.name}\n{link}",
            "Berth",
        ]
    )
    subject = f"{ws.name} will be {'deleted' if deleted else 'stopped'} soon"
    try:
        mail.send(settings, to, f"Berth: {subject}", body)
    except mail.MailError as exc:
        if exc.recipient:
            _refused_at[ws.id] = now
        else:
            _failed_at = now
        log.warning("notices: %s", exc)
        return False
    _failed_at = None
    _refused_at.pop(ws.id, None)
    Workspace.update(notified=key).where(Workspace.id == ws.id).execute()
    ws.notified = key
    audit.record(
        "workspace.notice",
        actor="lifecycle",
        target=f"workspace:{ws.owner.username}.{ws.name}",
        to=to,
        subject=subject,
    )
    return True
