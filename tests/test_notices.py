"""Owners are told by email before Berth deletes or stops their workspace by itself,
through a real SMTP server (aiosmtpd on loopback): once per warning, again when the
deadline changes, never to someone without an address, and a mail server that is away
neither fails the sweep nor marks the warning as sent."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller

from app.models import AuditEvent, Template, User, Workspace
from app.workspaces import notices, scheduled

NOW = datetime(2026, 6, 1, 12, 0, 0)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if address.startswith("gone@"):
            return "550 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture(autouse=True)
def _no_earlier_failure(monkeypatch):
    monkeypatch.setattr(notices, "_failed_at", None)


def _settings(instance, port):
    return replace(
        instance,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls="none",
        smtp_from="berth@team.test",
        public_url="https://berth.team.test",
    )


def _expiring(
    name="notes", email="ann@team.test", ttl=timedelta(minutes=10), owner="ann", template=None
):
    owner = User.get_or_none(User.username == owner) or User.create(
        username=owner, password_hash=None, role="member", email=email
    )
    return Workspace.create(
        template=template,
        owner=owner,
        name=name,
        live_name=name,
        status="stopped",
        created_at=NOW - timedelta(hours=2),
        status_since=NOW - timedelta(hours=1),
        ttl_expires_at=NOW + ttl,
    )


def test_an_owner_is_mailed_once_before_the_time_to_live_ends(instance, smtp):
    controller, inbox = smtp
    settings = _settings(instance, controller.port)
    ws = _expiring()
    assert scheduled.sweep(settings, now=NOW) == "nothing due"
    assert len(inbox.messages) == 1
    to, message = inbox.messages[0]
    assert to == ["ann@team.test"] and message["From"] == "berth@team.test"
    assert message["Subject"] == "Berth: notes will be deleted soon"
    body = message.get_payload()
    assert "will be deleted at 2026-06-01 12:10:00 UTC" in body
    assert f"https://berth.team.test/workspaces/{ws.id}" in body
    # The next sweeps send nothing more for the same warning.
    scheduled.sweep(settings, now=NOW + timedelta(seconds=30))
    assert len(inbox.messages) == 1
    assert AuditEvent.select().where(AuditEvent.action == "workspace.notice").count() == 1
    # Extended, then near its new end: a new warning, a new mail.
    Workspace.update(ttl_expires_at=NOW + timedelta(hours=1)).where(Workspace.id == ws.id).execute()
    scheduled.sweep(settings, now=NOW + timedelta(minutes=50))
    assert len(inbox.messages) == 2 and "13:00:00 UTC" in inbox.messages[1][1].get_payload()


def test_nobody_without_an_address_or_without_a_server_is_mailed(instance, smtp):
    controller, inbox = smtp
    _expiring(email=None)
    scheduled.sweep(_settings(instance, controller.port), now=NOW)
    scheduled.sweep(instance, now=NOW)  # no SMTP host set
    assert inbox.messages == []


def test_a_mail_server_that_is_away_is_tried_again_later(instance, smtp):
    controller, inbox = smtp
    ws = _expiring()
    away = _settings(instance, _free_port())  # nothing listens there
    assert scheduled.sweep(away, now=NOW) == "nothing due"  # the sweep itself goes on
    assert Workspace.get_by_id(ws.id).notified is None
    settings = _settings(instance, controller.port)
    scheduled.sweep(settings, now=NOW + timedelta(minutes=1))
    assert inbox.messages == []  # waits RETRY_AFTER after a failure
    scheduled.sweep(settings, now=NOW + notices.RETRY_AFTER)
    assert len(inbox.messages) == 1


def test_an_address_the_server_refuses_holds_up_only_its_own_mail(instance, smtp):
    controller, inbox = smtp
    settings = _settings(instance, controller.port)
    refused = _expiring("first", email="gone@team.test", owner="gus")
    _expiring("second", email="ann@team.test", owner="ann")
    scheduled.sweep(settings, now=NOW)
    assert [to for to, _ in inbox.messages] == [["ann@team.test"]]
    assert Workspace.get_by_id(refused.id).notified is None  # tried again later
    # An address that is no plain address is never sent to.
    odd = _expiring("third", email="x,eve@evil.test", owner="odd")
    scheduled.sweep(settings, now=NOW + timedelta(seconds=30))
    assert len(inbox.messages) == 1 and Workspace.get_by_id(odd.id).notified is None


def test_agent_sandboxes_are_not_mailed_about_their_time_to_live(instance, smtp):
    controller, inbox = smtp
    agent = Template.create(name="agents", source_kind="builtin", source="x", profile="agent")
    _expiring("sandbox", template=agent)
    scheduled.sweep(_settings(instance, controller.port), now=NOW)
    assert inbox.messages == []
