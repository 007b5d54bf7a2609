"""What a workspace user could do with how Berth restarts and sets up workspaces: a
process planted to look like the IDE is never taken for it (the IDE's pid file lives in
the container's own tmpfs, and only a process running from the bundle counts)."""

from __future__ import annotations

from app.db import database
from app.models import User, Workspace
from app.workspaces import ide, service, worker
from tests.services import wait_until
from tests.test_worker import _run_next_job, instance_dir  # noqa: F401, F811  (a fixture)


def test_the_ide_is_started_anew_after_a_restart_and_never_mistaken(
    instance_dir,  # noqa: F811  (the fixture imported above)
    docker_client,
    tools_bundle,
):
    """code-server's pid file is in the container's tmpfs: after a stop and a start the
    IDE is started again, not taken as running because an old pid now names another
    process (once the IDE start's own grep, and a minute's wait for an IDE that never
    came). A process that only looks like it (its command line says code-server and
    --auth password) is not taken for it either."""
    with database.connection_context():
        owner = User.get(User.username == "wk")
        ws = service.create(owner, "again", template_name="base", data_dir=instance_dir.data_dir)
    w = worker.Worker(instance_dir)
    assert _run_next_job(w, ws.id).status == "succeeded"
    for kind in ("stop", "start", "stop", "start"):
        if kind == "stop":  # the IDE runs when it stops (it starts on an open, not by itself)
            running = w.runtime.find(ws.id).id
            assert ide.launch(w.runtime, running, ws.id, "dev", "/workspaces", "k" * 32, print)
        with database.connection_context():
            service.request(Workspace.get_by_id(ws.id), kind, data_dir=instance_dir.data_dir)
        job = _run_next_job(w, ws.id)
        assert job.status == "succeeded", job.error
    container = docker_client.containers.get(w.runtime.find(ws.id).id)
    address = w.runtime.placement(container.id).address
    lines = []
    assert ide.launch(w.runtime, container.id, ws.id, "dev", "/workspaces", "k" * 32, lines.append)
    assert lines[0] == "ide: code-server started", lines
    assert lines[1].startswith("ide: code-server pid ") and len(lines) == 2, lines
    wait_until(lambda: ide.healthz(address) is not None, 60, what="the IDE answering")
    pid = w.runtime.exec(container.id, ["cat", ide.PIDFILE], user="dev").stdout.strip()
    w.runtime.exec(container.id, ["kill", pid], user="dev")
    decoy = w.runtime.exec(
        container.id,
        [
            "sh",
            "-c",
            "sh -c 'sleep 600; :' code-server --auth password & echo $! > $0",
            ide.PIDFILE,
        ],
        user="dev",
    )
    assert decoy.exit_code == 0
    decoy_pid = w.runtime.exec(container.id, ["cat", ide.PIDFILE], user="dev").stdout.strip()
    lines = []
    assert ide.launch(w.runtime, container.id, ws.id, "dev", "/workspaces", "k" * 32, lines.append)
    assert "ide: code-server started" in lines
    assert ide.wait_ready(address, lines.append) and "ide: code-server is ready" in lines
    # Stopping the IDE stops only a process from the bundle: the decoy lives on.
    assert ide.stop(w.runtime, container.id, "dev") == "code-server stopped"
    wait_until(lambda: ide.healthz(address) is None, 30, what="the IDE gone")
    assert w.runtime.exec(container.id, ["kill", "-0", decoy_pid], user="dev").exit_code == 0
    # A pid file naming anything else (the container's first process) stops nothing.
    w.runtime.exec(container.id, ["sh", "-c", f"echo 1 > {ide.PIDFILE}"], user="dev")
    assert ide.stop(w.runtime, container.id, "dev") == "code-server does not run"
    assert w.runtime.exec(container.id, ["kill", "-0", decoy_pid], user="dev").exit_code == 0
