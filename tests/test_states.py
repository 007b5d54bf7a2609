"""The workspace state machine (app.states): which moves are allowed, and that ``move``
records every one, a reconcile's included, on SQLite and on PostgreSQL."""

import json

import pytest

from app import states
from app.models import AuditEvent, StateChange, Transition, User, Workspace
from app.states import Cause, JobStatus, Kind, Status


def _workspace(status: Status) -> Workspace:
    owner = User.get_or_none(User.username == "sm") or User.create(
        username="sm", password_hash=None, role="member"
    )
    return Workspace.create(owner=owner, name="w", live_name="w", status=status)


def _job(ws: Workspace, kind: Kind = Kind.START) -> Transition:
    return Transition.create(
        workspace=ws, kind=kind, status=JobStatus.RUNNING, cause=Cause.USER, actor="sm"
    )


def test_every_status_has_its_moves_and_a_deleted_workspace_has_none():
    assert set(states.MOVES) == set(Status)
    assert states.MOVES[Status.DELETED] == frozenset()
    for status in states.LIVE:
        assert {Status.FAILED, Status.DELETING} <= states.MOVES[status]
    # Every status a request is accepted from can actually be left.
    for kind, sources in states.REQUESTABLE_FROM.items():
        assert sources and all(states.MOVES[s] for s in sources), kind


FIRST_MOVES = {
    Kind.CREATE: (Status.BUILDING, Status.STARTING),
    Kind.START: (Status.BUILDING, Status.STARTING),
    Kind.STOP: (Status.STOPPING,),
    Kind.RESTART: (Status.STOPPING,),
    Kind.REBUILD: (Status.BUILDING,),
    Kind.DELETE: (Status.DELETING,),
}


@pytest.mark.parametrize("kind", sorted(FIRST_MOVES))
def test_a_job_run_again_after_a_crash_can_go_on_from_wherever_it_was_left(kind):
    """A worker that dies mid-job leaves the workspace in a working status, and the job
    runs again from the top (every step is idempotent): its first move must be allowed
    from there, and from every status a request of its kind is accepted from."""
    sources = set(states.WORKING) | set(states.REQUESTABLE_FROM.get(kind, (Status.PENDING,)))
    sources |= {Status.RUNNING, Status.POOLED} if kind != Kind.DELETE else set()
    for source in sources:
        for first in FIRST_MOVES[kind]:
            assert states.allowed(source, first), (kind, source, first)
    for source in states.WORKING:  # and it ends in a settled status
        for end in (Status.RUNNING, Status.STOPPED, Status.POOLED, Status.FAILED):
            assert states.allowed(source, end), (source, end)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (Status.STOPPED, Status.RUNNING),  # a start goes through starting (or building)
        (Status.DELETED, Status.RUNNING),
        (Status.DELETED, Status.FAILED),
        (Status.POOLED, Status.STOPPED),
        (Status.PENDING, Status.DELETED),  # deleting comes first
    ],
)
def test_a_move_the_machine_does_not_allow_is_refused_and_changes_nothing(
    instance, current, target
):
    ws = _workspace(current)
    job = _job(ws)
    with pytest.raises(states.IllegalMove, match=f"{current} cannot become {target}"):
        states.move(ws, target, job)
    assert Workspace.get_by_id(ws.id).status == current
    assert StateChange.select().where(StateChange.workspace == ws.id).count() == 0


def test_an_allowed_move_is_made_and_recorded_with_its_job(instance):
    ws = _workspace(Status.STOPPED)
    job = _job(ws)
    assert states.move(ws, Status.STARTING, job)
    assert states.move(ws, Status.RUNNING, job, message="up")
    row = Workspace.get_by_id(ws.id)
    assert (row.status, ws.status) == ("running", "running")
    changes = list(
        StateChange.select().where(StateChange.workspace == ws.id).order_by(StateChange.id)
    )
    assert [(c.from_status, c.to_status, c.transition_id) for c in changes] == [
        ("stopped", "starting", job.id),
        ("starting", "running", job.id),
    ]
    assert (changes[-1].cause, changes[-1].actor, changes[-1].message) == ("user", "sm", "up")
    # Staying put records a message and keeps the clock that counts from the status.
    since = row.status_since
    assert states.move(ws, Status.RUNNING, job, message="noted")
    assert Workspace.get_by_id(ws.id).status_since == since


def test_a_reconcile_move_gets_a_job_of_its_own_and_an_audit_record(instance):
    ws = _workspace(Status.RUNNING)
    assert states.move(ws, Status.STOPPED, None, message="the container stopped by itself")
    job = Transition.get((Transition.workspace == ws.id) & (Transition.kind == Kind.RECONCILE))
    assert (job.status, job.cause, job.actor) == ("succeeded", "reconcile", "reconcile")
    assert job.reason == "the container stopped by itself"
    change = StateChange.get(StateChange.workspace == ws.id)
    assert (change.transition_id, change.cause) == (job.id, "reconcile")
    event = AuditEvent.get(AuditEvent.action == "workspace.reconcile")
    assert '"to_status": "stopped"' in event.detail
    # A finished reconcile job never blocks the next request.
    assert (
        not Transition.select()
        .where((Transition.workspace == ws.id) & Transition.status.in_(states.ACTIVE_JOB))
        .exists()
    )


def test_a_move_expecting_a_status_loses_to_one_that_came_first(instance):
    ws = _workspace(Status.POOLED)
    other = Workspace.get_by_id(ws.id)
    job = _job(ws, Kind.CREATE)
    assert states.move(other, Status.RUNNING, job, expect=Status.POOLED, name="first")
    assert not states.move(ws, Status.RUNNING, job, expect=Status.POOLED, name="second")
    assert Workspace.get_by_id(ws.id).name == "first"
    assert StateChange.select().where(StateChange.workspace == ws.id).count() == 1


def test_statuses_compare_and_store_as_their_text(instance):
    ws = _workspace(Status.FAILED)
    assert Workspace.get(Workspace.status == Status.FAILED).id == ws.id
    assert Workspace.select().where(Workspace.status.in_(states.ACTIVE)).count() == 0
    assert Status("failed") is Status.FAILED and f"{Status.FAILED}" == "failed"


def test_a_long_remote_user_is_recorded_whole(instance):
    """What a config names as its remoteUser has no length limit of Berth's own: the
    placement that records it must not fail (and with it the job and reconcile)."""
    ws = _workspace(Status.RUNNING)
    Workspace.update(remote_user="u" * 5000, runtime_host="h" * 500).where(
        Workspace.id == ws.id
    ).execute()
    assert len(Workspace.get_by_id(ws.id).remote_user) == 5000


class _Troubled:
    """A runtime that fails (a bug, not a refusal) for one workspace's container and
    has none for the others: reconcile must go on past the first."""

    instance = "fake"
    tools = False

    def __init__(self, troubled: int):
        self.troubled = troubled

    def inventory(self):
        return [], []

    def find(self, workspace_id):
        if workspace_id == self.troubled:
            raise RuntimeError("a bug in the runtime")
        return None


def test_reconcile_goes_on_past_a_workspace_it_cannot_look_at(instance):
    from app.workspaces import worker

    first, second = _workspace(Status.RUNNING), None
    owner = User.get(User.username == "sm")
    second = Workspace.create(owner=owner, name="v", live_name="v", status=Status.RUNNING)
    repaired = worker.Worker(instance, runtime=_Troubled(first.id)).reconcile()
    assert repaired == ["v: container vanished, marked failed"]
    assert Workspace.get_by_id(second.id).status == "failed"
    assert Workspace.get_by_id(first.id).status == "running"  # left for the next look


def test_a_job_records_each_stage_and_what_it_took(instance):
    """JobLog times stages with the clock it is given: a failing stage is timed too, a
    stage run twice (a restart's two starts) adds up, and the row gets them in order."""
    from app.workspaces.lifecycle import JobLog

    ticks = iter([0.0, 1.5, 2.0, 2.25, 3.0, 3.5])
    job = _job(_workspace(Status.STOPPED))
    log = JobLog(job, clock=lambda: next(ticks))
    with log.stage("build"):
        pass
    with pytest.raises(RuntimeError), log.stage("start"):
        raise RuntimeError("the engine refused")
    with log.stage("start"):
        pass
    log.flush()
    assert log.stages == [["build", 1.5], ["start", 0.75]]
    assert json.loads(Transition.get_by_id(job.id).stages) == [["build", 1.5], ["start", 0.75]]
    assert log.timing() == "stages: build 1.50 s, start 0.75 s (2.25 s together)"


def test_a_job_shows_the_stage_under_way_and_hook_phases_as_parts(instance):
    """While a stage runs, the row carries it as [name, null] (the page's timeline shows it
    running); a dotted name is a part of its stage and not counted twice in the total."""
    from app.workspaces.lifecycle import JobLog

    ticks = iter([0.0, 1.0, 1.0, 1.25, 1.75, 2.0])
    job = _job(_workspace(Status.STOPPED))
    log = JobLog(job, clock=lambda: next(ticks))
    with log.stage("start"):
        pass
    with log.stage("hooks"), log.stage("hooks.postCreateCommand"):
        log.flush()
        assert json.loads(Transition.get_by_id(job.id).stages) == [
            ["start", 1.0],
            ["hooks", None],
            ["hooks.postCreateCommand", None],
        ]
    log.flush()
    assert json.loads(Transition.get_by_id(job.id).stages) == [
        ["start", 1.0],
        ["hooks.postCreateCommand", 0.5],
        ["hooks", 1.0],
    ]
    assert log.timing().endswith("(2.00 s together)")
