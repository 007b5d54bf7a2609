"""The lifecycle rules (app.workspaces.automatic) and backup retention, without services."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from app.backups import database as db_backups
from app.config import Settings
from app.durations import format_duration
from app.workspaces import templates
from app.workspaces.automatic import Policy, Use, outlook, policy_for

NOW = datetime(2026, 11, 22, 14, 0, 0)


def ws(status="running", since=NOW - timedelta(hours=1), ttl=None, created=None):
    return SimpleNamespace(
        status=status,
        status_since=since,
        ttl_expires_at=ttl,
        created_at=created or since,
    )


def test_idle_counts_from_the_last_use_after_the_start():
    rules = Policy(idle_timeout=timedelta(minutes=30))
    uses = [
        Use("ssh", NOW - timedelta(minutes=10), "input"),
        Use("http", NOW - timedelta(hours=3)),  # before this start: ignored
    ]
    look = outlook(ws(), rules, uses, NOW)
    assert look.stops_at == NOW + timedelta(minutes=20)
    assert look.stop_rule == "idle" and look.due is None
    look = outlook(ws(), rules, uses, NOW + timedelta(minutes=21))
    kind, rule, reason = look.due
    assert (kind, rule) == ("stop", "idle")
    assert "idle for 30m" in reason and "ssh (input)" in reason


def test_no_use_at_all_counts_from_the_start():
    look = outlook(ws(), Policy(idle_timeout=timedelta(minutes=30)), [], NOW)
    assert look.due[1] == "idle" and "no use since it started" in look.due[2]


def test_a_running_api_exec_keeps_it_up_but_not_forever():
    rules = Policy(idle_timeout=timedelta(minutes=5))
    running = [Use("exec", NOW - timedelta(minutes=50), "pytest", open_sessions=1)]
    assert outlook(ws(), rules, running, NOW).due is None
    stale = [Use("exec", NOW - timedelta(hours=2), "pytest", open_sessions=1)]
    assert outlook(ws(since=NOW - timedelta(hours=3)), rules, stale, NOW).due is not None


def test_open_ssh_sessions_alone_do_not_keep_it_up():
    rules = Policy(idle_timeout=timedelta(minutes=5))
    uses = [Use("ssh", NOW - timedelta(minutes=30), "session opened", open_sessions=2)]
    assert outlook(ws(), rules, uses, NOW).due[1] == "idle"


def test_never_idles_when_the_timeout_is_zero():
    rules = policy_for(None, {"idle_timeout": "0"})
    assert rules.idle_timeout is None
    look = outlook(ws(since=NOW - timedelta(days=30)), rules, [], NOW)
    assert look.due is None and look.stops_at is None


def test_max_runtime_stops_even_when_busy_and_warns_first():
    rules = Policy(idle_timeout=None, max_runtime=timedelta(hours=2))
    busy = [Use("keepalive", NOW)]
    look = outlook(ws(since=NOW - timedelta(minutes=110)), rules, busy, NOW)
    assert look.due is None and look.stop_rule == "max-runtime"
    assert any("will be stopped" in w for w in look.warnings)
    look = outlook(ws(since=NOW - timedelta(hours=2, seconds=1)), rules, busy, NOW)
    assert look.due[:2] == ("stop", "max-runtime")


def test_ttl_deletes_in_any_settled_state_and_warns_first():
    rules = Policy(idle_timeout=None)
    soon = ws(status="stopped", ttl=NOW + timedelta(minutes=5), created=NOW - timedelta(hours=4))
    look = outlook(soon, rules, [], NOW)
    assert look.delete_rule == "ttl" and look.due is None
    assert any("time to live" in w for w in look.warnings)
    look = outlook(soon, rules, [], NOW + timedelta(minutes=6))
    assert look.due[:2] == ("delete", "ttl")


def test_dormancy_and_failed_cleanup():
    rules = Policy(dormant_after=timedelta(days=14), failed_cleanup_after=timedelta(hours=6))
    stopped = ws(status="stopped", since=NOW - timedelta(days=15))
    assert outlook(stopped, rules, [], NOW).due[:2] == ("delete", "dormancy")
    failed = ws(status="failed", since=NOW - timedelta(hours=7))
    assert outlook(failed, rules, [], NOW).due[:2] == ("delete", "failed-cleanup")
    assert outlook(ws(status="stopped"), Policy(), [], NOW).due is None  # off by default


def test_policy_reads_template_limits():
    template = SimpleNamespace(
        limits=json.dumps(
            {
                "max_runtime": "8h",
                "dormant_after": "30d",
                "dormant_backup": True,
                "warn_before": "1h",
            }
        )
    )
    rules = policy_for(template, {"idle_timeout": "45m"})
    assert rules == Policy(
        idle_timeout=timedelta(minutes=45),
        max_runtime=timedelta(hours=8),
        warn_before=timedelta(hours=1),
        dormant_after=timedelta(days=30),
        dormant_backup=True,
    )


def test_duration_parameters_have_ranges_and_never():
    spec = {"type": "duration", "max": "24h", "allow_never": True}
    assert templates.check_parameter("idle_timeout", spec, "2h") == "2h"
    assert templates.check_parameter("idle_timeout", spec, "never") == "0"
    with pytest.raises(templates.ParameterError, match="longer than this template allows"):
        templates.check_parameter("idle_timeout", spec, "2d")
    with pytest.raises(templates.ParameterError, match="does not allow 0"):
        templates.check_parameter("idle_timeout", {"type": "duration"}, "0")
    with pytest.raises(templates.ParameterError, match="not a duration"):
        templates.check_parameter("idle_timeout", spec, "soon")


def test_format_duration_reads_back():
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(days=2, seconds=5)) == "2d5s"


def test_retention_keeps_the_newest_per_day_and_week_and_nothing_else(tmp_path):
    settings = Settings.load(
        {"data_dir": str(tmp_path), "backup_keep_daily": 3, "backup_keep_weekly": 2}, environ={}
    )
    folder = db_backups.folder(settings)
    folder.mkdir(parents=True)
    names = {}
    # Two backups a day over 20 days, ending Sunday 2026-11-22.
    for day in range(20):
        for hour in (3, 15):
            at = datetime(2026, 11, 22, hour) - timedelta(days=day)
            name = f"berth-{at:%Y%m%dT%H%M%SZ}.sqlite3"
            (folder / name).write_bytes(b"SQLite format 3\x00")
            names[name] = at
    (folder / "notes.txt").write_text("not a backup")
    (folder / "berth-20261122T160000Z.sqlite3.partial").write_text("unfinished")
    removed = {p.name for p in db_backups.retention(settings)}
    kept = set(names) - removed
    assert kept == {
        "berth-20261122T150000Z.sqlite3",  # newest: today, this week
        "berth-20261121T150000Z.sqlite3",
        "berth-20261120T150000Z.sqlite3",
        "berth-20261115T150000Z.sqlite3",  # the newest of the previous ISO week (Sunday)
    }
    assert (folder / "notes.txt").exists()
    assert (folder / "berth-20261122T160000Z.sqlite3.partial").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name in names) == sorted(kept)


def test_only_configs_that_can_be_chosen_are_offered():
    """A repository's folder names are anyone's: one that is no text (a lone surrogate
    from bytes that are not UTF-8), too long or with a backslash or newline could not be
    stored, shown or chosen; and at most 20 are offered."""
    from app.workspaces.lifecycle import MAX_CHOICES, _offerable

    good = ".devcontainer/api/devcontainer.json"
    odd = [
        ".devcontainer/\udcff/devcontainer.json",
        ".devcontainer/" + "x" * 300 + "/devcontainer.json",
        ".devcontainer/a\\b/devcontainer.json",
        ".devcontainer/a\nb/devcontainer.json",
    ]
    assert _offerable([*odd, good]) == [good]
    many = [f".devcontainer/c{n:02}/devcontainer.json" for n in range(30)]
    assert _offerable(many) == many[:MAX_CHOICES]


def test_a_start_counts_as_running_once_started_only_with_nothing_left_to_set_up():
    """No command in any phase, no VS Code settings or extensions, not an agent's
    sandbox, no IDE open waiting, and either set up before or a new container of a
    create (not for the warm pool, no dotfiles to put in): running as soon as the
    container runs (the rest follows). Any one of these missing: running once set up."""
    from app.workspaces import pool
    from app.workspaces.lifecycle import _running_once_started

    def owner(name="ann", dotfiles=None):
        return SimpleNamespace(username=name, dotfiles_url=dotfiles)

    person = SimpleNamespace(template=SimpleNamespace(profile="dev"), owner=owner())
    agent = SimpleNamespace(template=SimpleNamespace(profile="agent"), owner=owner())
    quiet = SimpleNamespace(hooks={"postStartCommand": [], "onCreateCommand": []}, vscode={})
    api = SimpleNamespace(cause="api", kind="start")
    create = SimpleNamespace(cause="api", kind="create")
    assert _running_once_started(person, quiet, api, True, False)
    assert not _running_once_started(person, quiet, api, False, False)
    assert not _running_once_started(agent, quiet, api, True, False)
    assert not _running_once_started(
        person, quiet, SimpleNamespace(cause="ide", kind="start"), True, False
    )
    hooked = SimpleNamespace(hooks={"postStartCommand": ["make serve"]}, vscode={})
    assert not _running_once_started(person, hooked, api, True, False)
    for vscode in ({"settings": {"a": 1}}, {"extensions": ["ms-python.python"]}):
        customized = SimpleNamespace(hooks={}, vscode=vscode)
        assert not _running_once_started(person, customized, api, True, False)
    # A new container: a create's, unless its owner has dotfiles or it is for the pool.
    assert _running_once_started(person, quiet, create, False, True)
    assert not _running_once_started(
        person, quiet, SimpleNamespace(cause="api", kind="rebuild"), False, True
    )
    assert not _running_once_started(person, hooked, create, False, True)
    with_dotfiles = SimpleNamespace(template=person.template, owner=owner(dotfiles="https://x/d"))
    assert not _running_once_started(with_dotfiles, quiet, create, False, True)
    pooled = SimpleNamespace(template=person.template, owner=owner(pool.POOL_USER))
    assert not _running_once_started(pooled, quiet, create, False, True)
