"""When the browser IDE starts and stops (app.workspaces.ide_sessions), without a
container: the idleness rule read from code-server's /healthz answers, the template
setting, and the claim that lets one launch through however many opens ask at once.
The real code-server is in tests/test_ide.py."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest

from app import accounts
from app.models import Template, Workspace
from app.workspaces import ide_sessions as sessions
from app.workspaces import templates

NOW = datetime(2026, 11, 30, 10, 0, 0)
MS = 1000


def healthz(status: str, beat: datetime | None) -> dict:
    epoch = datetime(1970, 1, 1)
    return {"status": status, "lastHeartbeat": (beat - epoch).total_seconds() * MS if beat else 0}


READY = sessions.IdeState(sessions.READY, NOW - timedelta(hours=1))


def test_an_ide_with_a_connection_is_never_idle():
    assert sessions.idle_since(healthz("alive", NOW - timedelta(hours=2)), READY) is None


def test_idleness_counts_from_a_minute_after_the_last_heartbeat():
    """code-server only looks for connections once a minute: the one it last saw may
    have lasted until its next look."""
    beat = NOW - timedelta(minutes=20)
    assert sessions.idle_since(healthz("expired", beat), READY) == beat + timedelta(minutes=1)
    # A state it cannot tell ("unknown") is not a connection either.
    assert sessions.idle_since(healthz("unknown", beat), READY) == beat + timedelta(minutes=1)


def test_an_ide_nobody_opened_is_idle_since_it_started():
    assert sessions.idle_since(healthz("expired", None), READY) == READY.since
    # A heartbeat from before this start (a clock that jumped) does not count.
    old = NOW - timedelta(days=1)
    assert sessions.idle_since(healthz("expired", old), READY) == READY.since


@pytest.mark.parametrize("beat", ["soon", None, True, -5, [1]])
def test_a_malformed_heartbeat_counts_from_the_start(beat):
    answer = {"status": "expired", "lastHeartbeat": beat}
    assert sessions.idle_since(answer, READY) == READY.since


def _template(limits: dict):
    return Template(name="t", source_kind="builtin", source="/", limits=json.dumps(limits))


def test_the_template_sets_the_timeout_and_zero_means_never():
    assert sessions.idle_timeout(Workspace(template=None)) == timedelta(minutes=15)
    assert sessions.idle_timeout(Workspace(template=_template({}))) == timedelta(minutes=15)
    got = sessions.idle_timeout(Workspace(template=_template({"ide_idle_timeout": "1h"})))
    assert got == timedelta(hours=1)
    for never in ("0", 0, "never"):
        limits = {"ide_idle_timeout": never}
        assert sessions.idle_timeout(Workspace(template=_template(limits))) is None


def test_a_template_refuses_a_timeout_that_is_no_duration(instance):
    template = Template.create(name="tpl", source_kind="builtin", source="/")
    with pytest.raises(templates.TemplateError, match="limits.ide_idle_timeout"):
        templates.update(template, limits={"ide_idle_timeout": "a while"})
    templates.update(template, limits={"ide_idle_timeout": "45m"})
    assert json.loads(Template.get_by_id(template.id).limits)["ide_idle_timeout"] == "45m"


@pytest.fixture
def workspace(instance):
    owner = accounts.create_user("ida", "long enough")
    return Workspace.create(owner=owner, name="w", status="running", container_id="c1")


def test_one_launch_however_many_open_at_once(workspace):
    """Many threads (two web threads, the web and the worker) ask at the same moment:
    exactly one gets the launch."""
    won = []
    barrier = threading.Barrier(8)

    def ask():
        from app.db import database

        with database.connection_context():
            row = Workspace.get_by_id(workspace.id)
            barrier.wait()
            if sessions.claim(row, NOW):
                won.append(1)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert sessions.state_of(Workspace.get_by_id(workspace.id)).state == sessions.STARTING


def test_a_launch_that_went_silent_or_failed_is_tried_again_later(workspace):
    assert sessions.claim(workspace, NOW)
    assert not sessions.claim(Workspace.get_by_id(workspace.id), NOW + timedelta(seconds=30))
    later = NOW + sessions.LAUNCH_TAKES_AT_MOST
    assert sessions.claim(Workspace.get_by_id(workspace.id), later)
    row = Workspace.get_by_id(workspace.id)
    assert sessions._record(row, sessions.UNAVAILABLE, later, "the tools bundle is not ready")
    assert not sessions.claim(Workspace.get_by_id(workspace.id), later + timedelta(seconds=1))
    assert sessions.claim(Workspace.get_by_id(workspace.id), later + sessions.RETRY)


def test_a_new_container_starts_with_no_ide(workspace):
    assert sessions.claim(workspace, NOW)
    sessions.answered(workspace, NOW)
    assert sessions.state_of(workspace).state == sessions.READY
    Workspace.update(container_id="c2").where(Workspace.id == workspace.id).execute()
    fresh = Workspace.get_by_id(workspace.id)
    assert sessions.state_of(fresh) == sessions.IdeState(sessions.OFF)
    # A record written for the old container is not written over the new one's.
    stale = Workspace.get_by_id(workspace.id)
    stale.container_id = "c1"
    assert not sessions._record(stale, sessions.READY, NOW)
    assert sessions.state_of(Workspace.get_by_id(workspace.id)).state == sessions.OFF


def test_the_sweep_stops_every_idle_ide_while_others_write(workspace, monkeypatch):
    """Another process writing between the sweep's read and its own write (the web
    recording activity, say) must not cost an IDE its stop (SQLite once refused such a
    write at once: "database is locked")."""
    from app.db import database
    from app.models import User
    from app.workspaces import ide

    other = Workspace.create(
        owner=workspace.owner, name="v", status="running", container_id="c2", address="10.9.0.3"
    )
    Workspace.update(address="10.9.0.2").where(Workspace.id == workspace.id).execute()
    for row in Workspace.select():
        assert sessions.claim(row, NOW - timedelta(hours=1))
        sessions.answered(row, NOW - timedelta(hours=1))

    def write_elsewhere():
        with database.connection_context():
            User.update(last_login_at=NOW).execute()

    def healthz(address, timeout=2.0):
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writer.join()
        return {"status": "expired", "lastHeartbeat": 0}

    stopped = []
    monkeypatch.setattr(ide, "healthz", healthz)
    monkeypatch.setattr(ide, "stop", lambda runtime, cid, user: stopped.append(cid) or "stopped")
    done = sessions.stop_idle(None, NOW)
    assert sorted(stopped) == ["c1", "c2"], done
    for row in (workspace, other):
        state = sessions.state_of(Workspace.get_by_id(row.id))
        assert (state.state, state.note) == (sessions.STOPPED, "nobody had it open for 15m")
    # Stopped ones are left alone by the next sweep.
    assert sessions.stop_idle(None, NOW + timedelta(hours=1)) == "no idle IDE"


def test_code_servers_process_is_kept_for_its_container(workspace):
    """app.ssh.ide_credentials answers processes below the code-server its launch
    named: known across the IDE's state changes, forgotten with the container."""
    sessions._record(workspace, sessions.READY, NOW, pid=57, start="122795")
    assert sessions.process(workspace) == (57, "122795")
    sessions._record(workspace, sessions.STOPPED, NOW)
    assert sessions.process(workspace) == (57, "122795")
    workspace.container_id = "c2"
    workspace.save(only=[Workspace.container_id])
    assert sessions.process(workspace) is None
    sessions._record(workspace, sessions.READY, NOW, pid=60, start="5")
    assert sessions.process(workspace) == (60, "5")


def test_a_workspace_stays_its_owners_alone_until_someone_else_uses_it(workspace):
    """The owner's git credentials are offered only while nobody else has run anything
    in the workspace or it was shared (app.workspaces.strangers); the first reason is
    kept for good."""
    from app.workspaces import strangers

    def reason():
        return Workspace.get_by_id(workspace.id).credentials_off

    strangers.used_by(workspace, workspace.owner, "signed in over SSH")
    assert reason() is None
    other = accounts.create_user("olaf", "long enough")
    strangers.used_by(workspace.id, other, "opened the IDE")
    assert reason().startswith("olaf opened the IDE at ")
    strangers.shared(workspace, "user bob")
    assert reason().startswith("olaf opened the IDE")


def test_the_launch_line_gives_code_servers_process_or_nothing():
    from app.workspaces import ide

    assert ide.launched_process(["ide: code-server started", "ide: code-server pid 57 1227"]) == {
        "pid": 57,
        "start": "1227",
    }
    for said in (["ide: code-server pid 57"], ["ide: code-server pid x 1"], []):
        assert ide.launched_process(said) == {}


def test_files_restored_from_a_backup_bring_along_what_others_could_leave():
    from types import SimpleNamespace

    from app.workspaces import strangers

    def backup(**meta):
        return SimpleNamespace(id="b1", meta=meta)

    assert strangers.restored(None) is None
    assert strangers.restored(backup(credentials_off=None)) is None
    assert "made before Berth kept track" in strangers.restored(backup())
    said = strangers.restored(backup(credentials_off="olaf opened the IDE at x"))
    assert said == "its files come from the backup b1 of a workspace where olaf opened the IDE at x"
