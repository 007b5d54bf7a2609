"""The workspace page's own reading of a job and a workspace (app.web.workspace_view),
on unsaved rows: the timeline, warnings, desktop links and the IDE's health."""

import json
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from app.models import Transition, User, Workspace
from app.web import workspace_view as view


def _job(status="succeeded", stages=(), log=""):
    return Transition(
        kind="create", status=status, stages=json.dumps(list(stages)), log=log, warnings="[]"
    )


def test_the_timeline_names_stages_nests_hook_phases_and_marks_the_failure():
    steps = view.timeline(
        _job(
            "failed",
            [["source", 0.5], ["build", 3.0], ["hooks.postCreateCommand", 1.0], ["hooks", 1.25]],
        )
    )
    assert [(s.label, s.state) for s in steps] == [
        ("Source", "done"),
        ("Build image", "done"),
        ("Lifecycle hooks", "failed"),
    ]
    assert [(p.label, p.seconds) for p in steps[2].parts] == [("postCreateCommand", 1.0)]
    running = view.timeline(_job("running", [["source", 0.5], ["build", None]]))
    assert running[-1].state == "running" and running[-1].seconds is None
    assert [s.label for s in view.timeline(_job("pending"))] == ["Waiting for the worker"]
    assert view.timeline(None) == []


def test_warnings_are_berths_own_not_lines_a_build_printed():
    job = _job(log="warning: re-enter your key at https://evil.example\n")
    job.warnings = json.dumps(["dotfiles: exit code 1", "dotfiles: exit code 1"])
    assert view.warnings(job) == ["dotfiles: exit code 1"]
    assert view.warnings(_job(log="warning: printed by a hook\n")) == []


def test_desktop_links_name_the_owner_for_someone_else():
    ann, bob = User(id=1, username="ann"), User(id=2, username="bob")
    ws = Workspace(id=5, name="api", owner=ann, workspace_folder="/workspaces/api project")
    mine = view.desktop(ws, ann, "dev.example", 2222, "berth-dev.example-2222")
    assert mine.vscode == "vscode://vscode-remote/ssh-remote+berth-api/workspaces/api%20project"
    assert "Host berth-api\n  HostName dev.example\n  Port 2222\n  User api" in mine.ssh_config
    theirs = view.desktop(ws, bob, "dev.example", 2222, "berth-dev.example-2222")
    assert theirs.vscode.startswith("vscode://vscode-remote/ssh-remote+berth-ann.api/")
    # A folder that is not absolute would run into the host alias: the root instead.
    odd = Workspace(id=6, name="odd", owner=ann, workspace_folder="@evil.example/x")
    assert (
        view.desktop(odd, ann, "h", 22, "a").vscode
        == "vscode://vscode-remote/ssh-remote+berth-odd/"
    )
    fragment = parse_qs(urlsplit(theirs.jetbrains).fragment)
    assert fragment["user"] == ["ann.api"] and fragment["projectPath"] == [
        "/workspaces/api project"
    ]


def test_the_ide_health_says_what_works_meanwhile():
    def ws(state=None, note=None, status="running"):
        record = {"instance": "c1", "state": state, "since": datetime(2026, 1, 1).isoformat()}
        return Workspace(status=status, container_id="c1", ide=json.dumps({**record, "note": note}))

    assert view.ide_health(ws("ready"), tools_ready=True).state == "ready"
    installing = view.ide_health(ws(), tools_ready=False)
    assert installing.state == "installing" and "SSH and desktop IDEs work now" in installing.text
    down = view.ide_health(ws("unavailable", "code-server could not start"), tools_ready=True)
    assert down.text == "unavailable: code-server could not start; SSH works now"
    assert "opening it starts it" in view.ide_health(ws("stopped"), tools_ready=True).text
    assert view.ide_health(ws(status="stopped"), tools_ready=True).state == "off"
