"""`berth worker` as a real process: one per instance, crash recovery, reconciliation."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import docker
import pytest

from app import migrations
from app.config import Settings
from app.db import database, open_database
from app.models import StateChange, Transition, User, Workspace
from app.runtime import ProvisionError, WorkspaceRef
from app.runtime.docker import DockerRuntime, names
from app.workspaces import ide, ide_sessions, lifecycle, service, templates, worker
from tests.dcfiles import git_repo
from tests.services import remove_engine_objects, wait_until


@pytest.fixture
def instance_dir(tmp_path, docker_client, base_image):
    settings = Settings.load({"data_dir": str(tmp_path / "data")}, environ={})
    settings.ensure_data_dir()
    open_database(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        templates.sync_builtin()
        User.create(username="wk", password_hash=None, role="member")
    yield settings
    runtime = DockerRuntime(docker_client, settings.instance)
    with database.connection_context():
        ids = [w.id for w in Workspace.select()]
    for ws_id in ids:
        runtime.remove_workspace(ws_id)
    remove_engine_objects([settings.data_dir])  # the instance's egress and build networks


def start_worker(settings: Settings, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "worker"],
        env={
            "BERTH_DATA_DIR": str(settings.data_dir),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def last_change(ws_id: int) -> StateChange:
    with database.connection_context():
        return (
            StateChange.select()
            .where(StateChange.workspace == ws_id)
            .order_by(StateChange.id.desc())
            .first()
        )


def status_of(ws_id: int) -> str:
    with database.connection_context():
        return Workspace.get_by_id(ws_id).status


def test_a_second_worker_does_not_start(instance_dir, tmp_path):
    with (tmp_path / "w1.log").open("wb") as log:
        first = start_worker(instance_dir, log)
    try:
        wait_until(
            lambda: "worker ready" in (tmp_path / "w1.log").read_text(),
            60,
            what="first worker ready",
        )
        second = subprocess.run(
            [sys.executable, "-m", "app", "worker"],
            capture_output=True,
            text=True,
            env={"BERTH_DATA_DIR": str(instance_dir.data_dir)},
            timeout=60,
        )
        assert second.returncode == 2
        assert f"another berth worker (pid {first.pid}) already runs" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0


def test_killing_the_worker_mid_create_ends_consistent(
    instance_dir, tmp_path, docker_client, base_image
):
    # A repository whose build takes a few seconds, with content no earlier run has built.
    repo = git_repo(
        tmp_path / "slow",
        {
            ".devcontainer/Dockerfile": (
                f"FROM {base_image}\nRUN sleep 6 && echo {time.time_ns()} > /built\n"
            ),
            ".devcontainer/devcontainer.json": json.dumps(
                {"build": {"dockerfile": "Dockerfile"}, "postCreateCommand": "touch /tmp/created"}
            ),
        },
    )
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(
            owner,
            "crashy",
            repo={"url": repo},
            data_dir=instance_dir.data_dir,
            local_roots=[tmp_path],
        )
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        first = start_worker(instance_dir, log)
    wait_until(lambda: status_of(ws.id) == "building", 120, what="building")
    time.sleep(2)  # in the middle of the Dockerfile's RUN
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    with database.connection_context():
        assert Transition.get(Transition.workspace == ws.id).status == "running"

    with log_path.open("ab") as log:
        second = start_worker(instance_dir, log)
    try:
        wait_until(
            lambda: status_of(ws.id) in ("running", "failed"),
            300,
            interval=0.5,
            what="create finished after the restart",
        )
        assert status_of(ws.id) == "running", log_path.read_text()
        assert "1 interrupted job(s) will run again" in log_path.read_text()
        runtime = DockerRuntime(docker_client, instance_dir.instance)
        containers = runtime._managed("containers", ws.id)
        assert [c.labels["berth.role"] for c in containers] == ["workspace"]  # no leftovers
        assert len(runtime._managed("networks", ws.id)) == 1
        assert len(runtime._managed("volumes", ws.id)) == 2
        output = containers[0].exec_run(["ls", "/tmp/created", "/built"]).exit_code
        assert output == 0
        with database.connection_context():
            job = Transition.get(Transition.workspace == ws.id)
            assert job.status == "succeeded"
            service.request(Workspace.get_by_id(ws.id), "delete", data_dir=instance_dir.data_dir)
        wait_until(lambda: status_of(ws.id) == "deleted", 120, what="deleted")
        assert not any(
            runtime._managed(kind, ws.id) for kind in ("containers", "networks", "volumes")
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)


def test_reconcile_repairs_drift(instance_dir, tmp_path, docker_client):
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "drift", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    with database.connection_context():
        job = Transition.get(Transition.workspace == ws.id)
        Transition.update(status="running").where(Transition.id == job.id).execute()
        lifecycle.run(w.ctx, Transition.get_by_id(job.id))
    assert status_of(ws.id) == "running"

    # An orphan: a container of this instance whose workspace row does not exist.
    orphan_ref = WorkspaceRef(instance_dir.instance, 99999, "wk", "ghost")
    orphan = docker_client.containers.create(
        "berth-base:bookworm",
        ["sleep", "60"],
        labels={**names.labels(orphan_ref), "berth.role": "workspace"},
    )
    # The instance's control container (tunnels, ending commands) is nobody's orphan.
    control = docker_client.containers.create(
        "berth-base:bookworm",
        ["sleep", "60"],
        name=f"berth-{instance_dir.instance}-control",
        labels={
            "berth.managed": "true",
            "berth.instance": instance_dir.instance,
            "berth.role": "control",
        },
    )
    # A container that vanished behind Berth's back.
    docker_client.containers.get(w.runtime.find(ws.id).id).remove(force=True)
    repaired = w.reconcile()
    control.reload()  # still there
    control.remove(force=True)
    assert any("removed orphaned container" in line for line in repaired)
    assert any("drift: container vanished, marked failed" in line for line in repaired)
    with pytest.raises(docker.errors.NotFound):
        orphan.reload()
    change = last_change(ws.id)
    assert (change.to_status, change.cause) == ("failed", "reconcile")
    with database.connection_context():
        assert "start the workspace to recreate it" in Workspace.get_by_id(ws.id).error
    assert w.reconcile() == []  # nothing left to repair


def _run_next_job(w: worker.Worker, ws_id: int) -> Transition:
    with database.connection_context():
        job = (
            Transition.select()
            .where((Transition.workspace == ws_id) & (Transition.status == "pending"))
            .get()
        )
        Transition.update(status="running").where(Transition.id == job.id).execute()
        lifecycle.run(w.ctx, Transition.get_by_id(job.id))
        return Transition.get_by_id(job.id)


def test_a_container_the_engine_started_again_is_set_up_again(instance_dir, docker_client):
    """After an engine restart (or a host reboot) the engine starts running workspaces
    again by itself (their restart policy); what Berth set up at start went with the old
    processes, so reconcile asks for a start job, once. A workspace Berth stopped stays
    stopped, and one the engine keeps restarting is stopped and marked so."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(
            owner, "reborn", template_name="agent-sandbox", data_dir=instance_dir.data_dir
        )
        idle = service.create(
            owner, "resting", template_name="base", data_dir=instance_dir.data_dir
        )
    w = worker.Worker(instance_dir)
    for each in (ws, idle):
        assert _run_next_job(w, each.id).status == "succeeded"
    with database.connection_context():
        service.request(idle, "stop", data_dir=instance_dir.data_dir)
    assert _run_next_job(w, idle.id).status == "succeeded"
    container = docker_client.containers.get(w.runtime.find(ws.id).id)
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # An older container without the policy gets it in place.
    container.update(restart_policy={"Name": "no"})
    assert w.reconcile() == []
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    token = ["cat", "/run/berth/token"]
    first = w.runtime.exec(container.id, token, user="dev")
    assert first.exit_code == 0 and first.stdout.strip()
    container.restart(timeout=1)  # as the engine does when it comes back
    assert w.runtime.exec(container.id, token, user="dev").exit_code != 0  # tmpfs, gone
    assert w.reconcile() == ["reborn: started again by the engine, set up again"]
    with database.connection_context():
        job = Transition.get((Transition.workspace == ws.id) & (Transition.status == "pending"))
        assert (job.kind, job.cause, job.actor) == ("start", "schedule", "reconcile")
        assert "the engine started the container again" in job.reason
        since = Workspace.get_by_id(ws.id).status_since
    done = _run_next_job(w, ws.id)
    assert done.status == "succeeded", done.error
    assert status_of(ws.id) == "running" and status_of(idle.id) == "stopped"
    with database.connection_context():  # running all along: its clocks were not reset
        assert Workspace.get_by_id(ws.id).status_since == since
        assert [c.to_status for c in StateChange.select().where(
            StateChange.transition == done.id
        )] == []  # fmt: skip
    again = w.runtime.exec(container.id, token, user="dev")
    assert again.exit_code == 0 and again.stdout.strip()  # the sandbox has a token again
    assert w.reconcile() == []  # set up once, not again and again

    # A container started outside Berth for a workspace Berth stopped: stopped again.
    resting = docker_client.containers.get(w.runtime.find(idle.id).id)
    resting.start()
    assert w.reconcile() == ["resting: its container was started outside Berth; stopped again"]
    resting.reload()
    assert resting.status == "exited" and status_of(idle.id) == "stopped"


def test_an_exited_container_is_marked_stopped_only_once_it_stays_exited(
    instance_dir, docker_client
):
    """An engine shutting down stops its containers while it still answers, and starts
    them again when it is back: a running workspace whose container is exited is marked
    stopped only when it stays so for EXITED_GRACE_SECONDS (on the worker's clock)."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "paused", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    now = [1000.0]
    w.clock = lambda: now[0]
    assert _run_next_job(w, ws.id).status == "succeeded"
    container = docker_client.containers.get(w.runtime.find(ws.id).id)
    container.stop(timeout=1)  # the engine going down, or someone outside Berth
    assert w.reconcile() == []
    now[0] += worker.EXITED_GRACE_SECONDS - 1
    assert w.reconcile() == [] and status_of(ws.id) == "running"
    container.start()  # the engine is back and started it again
    assert w.reconcile() == ["paused: started again by the engine, set up again"]
    assert _run_next_job(w, ws.id).status == "succeeded"
    container.stop(timeout=1)  # now it stays stopped
    assert w.reconcile() == []
    now[0] += worker.EXITED_GRACE_SECONDS
    assert w.reconcile() == ["paused: container had stopped, marked stopped"]
    assert status_of(ws.id) == "stopped" and w.exited_since == {}


def test_the_ide_comes_back_after_the_engine_starts_a_workspace_again(
    instance_dir, docker_client, tools_bundle
):
    """The engine restarts a container behind Berth's back: its IDE went with it. The
    sweep notices, and the next open starts it again (the record for the same container
    said "ready": it is never taken for an answer)."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "coder", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    assert _run_next_job(w, ws.id).status == "succeeded"

    def open_ide() -> Workspace:
        with database.connection_context():
            row = Workspace.get_by_id(ws.id)
            assert ide_sessions.claim(row)
            assert ide_sessions.launch(w.runtime, instance_dir.secret_key, row)
            return row

    open_ide()
    docker_client.containers.get(w.runtime.find(ws.id).id).restart(timeout=1)
    assert ide.healthz(w.runtime.placement(w.runtime.find(ws.id).id).address) is None
    assert w.reconcile() == ["coder: started again by the engine, set up again"]
    assert _run_next_job(w, ws.id).status == "succeeded"
    with database.connection_context():
        assert ide_sessions.stop_idle(w.runtime) == "no idle IDE"
        gone = ide_sessions.state_of(Workspace.get_by_id(ws.id))
        assert gone.state == ide_sessions.STOPPED
        assert gone.note == "code-server had exited or stopped answering"
    row = open_ide()
    assert ide_sessions.state_of(row).state == ide_sessions.READY
    assert ide.healthz(row.address) is not None


def test_a_container_the_engine_keeps_restarting_is_stopped_and_marked(instance_dir, docker_client):
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "flaky", template_name="base", data_dir=instance_dir.data_dir)
        Transition.update(status="succeeded").where(Transition.workspace == ws.id).execute()
        Workspace.update(status="running").where(Workspace.id == ws.id).execute()
    ref = WorkspaceRef(instance_dir.instance, ws.id, "wk", "flaky")
    # Its main process exits at once, and the engine keeps starting it again.
    crashing = docker_client.containers.run(
        "berth-base:bookworm",
        ["sh", "-c", "exit 3"],
        name=names.container_name(ref),
        labels={**names.labels(ref), "berth.role": "workspace"},
        restart_policy={"Name": "unless-stopped"},
        detach=True,
    )
    w = worker.Worker(instance_dir)
    wait_until(
        lambda: (
            crashing.reload()
            or (
                crashing.status == "restarting"
                and crashing.attrs["RestartCount"] > worker.CRASH_LOOP
            )
        ),
        60,
        what="the engine restarting the container again and again",
    )
    assert w.reconcile() == ["flaky: container had stopped, marked stopped"]
    crashing.reload()
    assert crashing.status == "exited"
    assert status_of(ws.id) == "stopped"
    change = last_change(ws.id)
    assert change.message.startswith("its main process kept exiting (exit code 3; the engine")


def test_a_job_the_worker_died_in_twice_is_failed_not_tried_forever(instance_dir, tmp_path):
    """A job running when the worker died is tried again, once: the second time the
    worker dies in it, it is what kills the worker, so it is failed with that reason and
    the jobs of other workspaces go on."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        poison = service.create(
            owner, "poison", template_name="base", data_dir=instance_dir.data_dir
        )
        again = service.create(owner, "again", template_name="base", data_dir=instance_dir.data_dir)
        for ws, attempts in ((poison, 2), (again, 1)):
            Transition.update(status="running", attempts=attempts).where(
                Transition.workspace == ws.id
            ).execute()
    with (tmp_path / "worker.log").open("wb") as log:
        process = start_worker(instance_dir, log)
    try:
        wait_until(lambda: status_of(poison.id) == "failed", 60, what="the poison job failed")
        wait_until(lambda: status_of(again.id) == "running", 300, what="the other one ran")
        with database.connection_context():
            job = Transition.get(Transition.workspace == poison.id)
            assert job.status == "failed" and "stopped 2 times" in job.error
            assert "not tried again" in Workspace.get_by_id(poison.id).error
            assert Transition.get(Transition.workspace == again.id).attempts == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_reconcile_leaves_a_workspace_alone_while_its_job_is_in_flight(instance_dir, docker_client):
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "midjob", template_name="base", data_dir=instance_dir.data_dir)
        # As inside a rebuild: the container is gone and the job has not made a new one.
        Workspace.update(status="running").where(Workspace.id == ws.id).execute()
    w = worker.Worker(instance_dir)
    assert w.reconcile() == []  # its create job is pending: nothing to repair yet
    assert status_of(ws.id) == "running"
    with database.connection_context():
        Transition.update(status="succeeded").where(Transition.workspace == ws.id).execute()
    w.busy.add(ws.id)  # a job the worker is carrying out right now
    assert w.reconcile() == []
    w.busy.discard(ws.id)
    assert any("container vanished" in line for line in w.reconcile())


def test_networks_made_at_once_by_several_processes_all_succeed(docker_client):
    """The worker and the egress gateway (or two Berths on one engine) pick subnets at
    the same moment: each network still gets made once, on a subnet of its own."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    instance = secrets.token_hex(4)
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"

    def fresh():  # each thread is a process of its own: no lock shared between them
        return DockerRuntime(docker.from_env(timeout=60), instance, pool, subnet_prefix=28)

    refs = [WorkspaceRef(instance, n, "wk", f"n{n}") for n in range(6)]
    try:
        with ThreadPoolExecutor(max_workers=8) as threads:
            made = list(threads.map(lambda ref: fresh().networks.ensure_network(ref), refs))
            egress = list(threads.map(lambda _: fresh().networks.ensure_egress_network(), range(3)))
        assert len({n.id for n in egress}) == 1
        subnets = [
            n.attrs["IPAM"]["Config"][0]["Subnet"]
            for n in (*made, egress[0])
            for n in [docker_client.networks.get(n.id)]
        ]
        assert len(set(subnets)) == len(subnets) == 7
    finally:
        for network in docker_client.networks.list(filters={"label": f"berth.instance={instance}"}):
            network.remove()


def test_a_bug_in_a_job_fails_it_and_the_workspace_plainly(instance_dir, monkeypatch):
    """An exception Berth did not expect (a bug) ends the job and the workspace as
    failed, with words and the log kept, instead of leaving the workspace half-way."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "buggy", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)

    def broken(*args, **kwargs):
        raise KeyError("a hook name nobody expected")

    monkeypatch.setattr(lifecycle.dc, "run_lifecycle", broken)
    job = _run_next_job(w, ws.id)
    assert job.status == "failed"
    assert "internal error: KeyError" in job.error
    assert status_of(ws.id) == "failed"
    assert "stages: " in job.log and "hooks " in job.log  # timed up to where it broke


def test_a_seeding_that_fails_leaves_no_container(instance_dir, docker_client, monkeypatch):
    """The workspace volume is seeded through the container once it is made; when the
    seeding fails, the container goes (a retry must seed again, never start on an
    unseeded volume) and the job fails with the seeding's words. The next start works."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "seeded", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    real_seed = type(w.runtime).seed_workspace_volume

    def failing_seed(runtime, ref, *args, **kwargs):
        runtime.volumes_.ensure_volume(ref, "workspace")  # made, as a real failure would
        raise ProvisionError("preparing the workspace volume failed: disk on fire")

    monkeypatch.setattr(type(w.runtime), "seed_workspace_volume", failing_seed)
    job = _run_next_job(w, ws.id)
    assert job.status == "failed" and "disk on fire" in job.error
    assert status_of(ws.id) == "failed"
    mine = {"label": [f"berth.instance={instance_dir.instance}", f"berth.workspace={ws.id}"]}
    assert docker_client.containers.list(all=True, filters=mine) == []

    monkeypatch.setattr(type(w.runtime), "seed_workspace_volume", real_seed)
    seeded = []
    monkeypatch.setattr(
        type(w.runtime),
        "seed_workspace_volume",
        lambda runtime, *args, **kwargs: (seeded.append(1), real_seed(runtime, *args, **kwargs)),
    )
    roles = {
        (v.attrs["Labels"] or {}).get("berth.role")
        for v in docker_client.volumes.list(filters=mine)
    }
    assert "workspace" not in roles  # not mistaken for a seeded one by the retry
    with database.connection_context():
        service.request(Workspace.get_by_id(ws.id), "start", data_dir=instance_dir.data_dir)
    job = _run_next_job(w, ws.id)
    assert job.status == "succeeded", job.log
    assert seeded == [1]
    assert status_of(ws.id) == "running"


def test_a_start_with_nothing_to_set_up_is_running_before_its_marker(
    instance_dir, docker_client, monkeypatch
):
    """A create or a start with no command in any phase is running once the container
    runs; the create's environment probe and the postStart marker follow (the job goes
    on and succeeds), and a person's command in that moment waits for the probe."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "quick", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    seen, asked, waited = [], [], []
    real = lifecycle.dc.run_lifecycle

    def ask(kind: str) -> str:
        try:
            service.request(Workspace.get_by_id(ws.id), kind, data_dir=instance_dir.data_dir)
        except service.WorkspaceError as exc:
            return exc.code
        return "queued"

    def spy(*args, **kwargs):
        seen.append(Workspace.get_by_id(ws.id).status)
        if len(seen) == 1:  # the create: not probed yet, so a command waits, then is refused
            started = time.monotonic()
            with pytest.raises(service.WorkspaceError) as refused:
                service.once_set_up(Workspace.get_by_id(ws.id), seconds=0.3)
            waited.append((refused.value.code, time.monotonic() - started >= 0.3))
        else:  # the start: one request waits in the queue, a second is busy
            asked.append([ask("stop"), ask("stop"), ask("rebuild")])
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle.dc, "run_lifecycle", spy)
    assert _run_next_job(w, ws.id).status == "succeeded"
    with database.connection_context():
        found = service.once_set_up(Workspace.get_by_id(ws.id), seconds=5)
        assert found.environment_known and found.person_env["HOME"] == "/home/dev"
        # No environment recorded (a container from before it was), and a job that does
        # not set one up: nothing to wait for.
        Workspace.update(remote_env=None).where(Workspace.id == ws.id).execute()
        Transition.create(workspace=ws.id, kind="backup", status="pending", actor="wk")
        started = time.monotonic()
        assert not service.once_set_up(Workspace.get_by_id(ws.id), seconds=5).environment_known
        assert time.monotonic() - started < 5
        Transition.delete().where(Transition.kind == "backup").execute()
        Workspace.update(remote_env=found.remote_env).where(Workspace.id == ws.id).execute()
        service.request(Workspace.get_by_id(ws.id), "stop", data_dir=instance_dir.data_dir)
    assert _run_next_job(w, ws.id).status == "succeeded"
    with database.connection_context():
        service.request(Workspace.get_by_id(ws.id), "start", data_dir=instance_dir.data_dir)
    assert _run_next_job(w, ws.id).status == "succeeded"
    assert seen == ["running", "running"]
    assert waited == [("setting_up", True)]
    assert asked == [["queued", "busy", "busy"]]
    assert status_of(ws.id) == "running"
    # The stop asked for during the start's last step runs after it.
    assert _run_next_job(w, ws.id).kind == "stop"
    assert status_of(ws.id) == "stopped"
    with database.connection_context():
        service.request(Workspace.get_by_id(ws.id), "start", data_dir=instance_dir.data_dir)
    assert _run_next_job(w, ws.id).status == "succeeded"
    container = w.runtime.find(ws.id).id
    started = w.runtime.facts(container)["started_at"]
    marker = w.runtime.exec(
        container, ["cat", "/home/dev/.devcontainer/.postStartCommandMarker"], user="dev"
    )
    assert marker.stdout.strip() == started


def test_networks_made_ahead_serve_the_next_creates_and_reconcile_keeps_only_those(
    instance_dir, docker_client
):
    """While no job runs, the worker makes the networks of the next two workspace ids;
    the next create takes its own, and reconcile keeps those but removes a network of a
    workspace id no row has and none is about to get."""
    w = worker.Worker(instance_dir)
    with database.connection_context():
        owner = User.get(User.username == "wk")
        first = service.create(owner, "first", template_name="base", data_dir=instance_dir.data_dir)
    w.busy.add(first.id)  # a job runs: nothing is made meanwhile
    assert w.make_networks_ahead() == []
    w.busy.discard(first.id)
    ahead = [f"berth-{instance_dir.instance}-ws-{first.id + n}" for n in (1, 2)]
    assert w.make_networks_ahead() == ahead
    assert w.make_networks_ahead() == []  # found, not made twice
    made = {name: docker_client.networks.get(name) for name in ahead}
    labels = made[ahead[0]].attrs["Labels"]
    assert labels["berth.workspace"] == str(first.id + 1)
    assert labels["berth.instance"] == instance_dir.instance and "berth.owner" not in labels

    beyond = WorkspaceRef(instance_dir.instance, first.id + 40, "wk", "ghost")
    w.runtime.networks.ensure_network(beyond)  # a workspace id nothing is about to get
    repaired = w.reconcile()
    assert repaired == [
        f"removed orphaned network berth-{instance_dir.instance}-ws-{first.id + 40}"
    ]
    for network in made.values():
        network.reload()  # kept

    with database.connection_context():
        second = service.create(
            owner, "second", template_name="base", data_dir=instance_dir.data_dir
        )
    assert second.id == first.id + 1
    job = _run_next_job(w, second.id)
    assert job.status == "succeeded", job.log
    networks = docker_client.containers.get(w.runtime.find(second.id).id).attrs["NetworkSettings"][
        "Networks"
    ]
    assert list(networks) == [ahead[0]]
    assert networks[ahead[0]]["NetworkID"] == made[ahead[0]].id
    # Deleting the workspace takes the network it was given.
    w.runtime.remove_workspace(second.id)
    with pytest.raises(docker.errors.NotFound):
        made[ahead[0]].reload()


def test_no_network_is_made_ahead_when_the_subnet_pool_runs_low(instance_dir, docker_client):
    """Subnets are kept for the workspaces that need one now: none is made ahead while
    only a few stay free."""
    import ipaddress
    import secrets

    w = worker.Worker(instance_dir)
    used = w.runtime.networks._used_subnets()
    while True:  # four subnets in all, none taken by another network on the engine
        pool = ipaddress.ip_network(
            f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/26"
        )
        if not any(pool.overlaps(u) for u in used):
            break
    w.runtime.networks.pool, w.runtime.networks.prefix = pool, 28
    assert w.runtime.make_networks_ahead(range(1000, 1002), keep_free=8) == []
    assert w.runtime.make_networks_ahead(range(1000, 1002), keep_free=3) == [
        f"berth-{instance_dir.instance}-ws-1000"
    ]  # a second would leave two free


def test_networks_are_made_ahead_only_after_a_create_and_a_quiet_moment(instance_dir):
    w = worker.Worker(instance_dir)
    now = [100.0]
    w.clock = lambda: now[0]
    w.last_job_ended = now[0]
    assert not w.networks_due()  # wanted from the start, but a job just ended
    now[0] += worker.NETWORKS_IDLE_SECONDS
    w.busy.add(1)
    assert not w.networks_due()  # a job runs
    w.busy.discard(1)
    assert w.networks_due()
    assert not w.networks_due()  # once
    w.busy.add(1)
    assert w.make_networks_ahead() == []  # a job came meanwhile: later, once quiet
    w.busy.discard(1)
    assert w.networks_due()

    def run_jobs():
        assert w.dispatch() == 1
        wait_until(lambda: not w.busy, 300, what="the job ran")

    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "quiet", template_name="base", data_dir=instance_dir.data_dir)
    run_jobs()
    assert status_of(ws.id) == "running"
    assert not w.networks_due()  # the create just ended
    now[0] += worker.NETWORKS_IDLE_SECONDS
    assert w.networks_due()
    with database.connection_context():
        service.request(Workspace.get_by_id(ws.id), "stop", data_dir=instance_dir.data_dir)
    run_jobs()
    now[0] += worker.NETWORKS_IDLE_SECONDS
    assert not w.networks_due()  # a stop makes no workspace


def test_reconcile_goes_on_past_an_orphan_the_engine_will_not_remove(instance_dir, docker_client):
    """An orphaned network still in use (by a container that is not Berth's) is left
    with a warning; the orphans after it are still removed."""
    w = worker.Worker(instance_dir)
    inventory = w.runtime.inventory

    def refused_first():  # the engine's own refusal, put before the other orphan
        instances, resources = inventory()
        return instances, sorted(resources, key=lambda r: r.kind != "network")

    w.runtime.inventory = refused_first
    busy = w.runtime.networks.ensure_network(WorkspaceRef(instance_dir.instance, 99990, "wk", "a"))
    stranger = docker_client.containers.run(
        "berth-base:bookworm", ["sleep", "120"], network=busy.name, detach=True
    )
    orphan = docker_client.containers.create(
        "berth-base:bookworm",
        ["sleep", "60"],
        labels={
            **names.labels(WorkspaceRef(instance_dir.instance, 99991, "wk", "b")),
            "berth.role": "workspace",
        },
    )
    try:
        repaired = w.reconcile()
        assert any(f"removed orphaned container {orphan.name}" in line for line in repaired)
        busy.reload()  # left: in use
    finally:
        stranger.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            orphan.remove(force=True)
    assert w.reconcile() == [f"removed orphaned network {busy.name}"]
