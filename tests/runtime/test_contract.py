"""The runtime contract: what any app.runtime.Runtime must do, whatever runs the
workspaces. Each test takes a ``runtime`` fixture; Docker is the one there is. A new
runtime (docs/scaling.md) adds itself to RUNTIMES and must pass every test here.

Everything is made under an instance id of its own and removed at the end."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from app import devcontainer as dc
from app.runtime import ExecEnd, Limits, ProvisionError, Runtime, WorkspaceRef
from app.runtime.docker import DockerRuntime
from app.runtime.docker.control import CONTROL_IMAGE
from tests.services import wait_until

pytestmark = pytest.mark.slow

LIMITS = Limits(cpus=1, memory_mb=512, pids=256)


def _docker(instance: str, pool: str) -> Runtime:
    import docker

    return DockerRuntime(docker.from_env(timeout=120), instance, pool, subnet_prefix=28)


RUNTIMES = {"docker": _docker}


@pytest.fixture(scope="module", params=sorted(RUNTIMES))
def runtime(request, base_image):
    instance = secrets.token_hex(4)
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"
    made = RUNTIMES[request.param](instance, pool)
    made.ensure_control_image(lambda line: None)  # socat and procps: a listener, ps
    made.made = []
    yield made
    for ws_id in made.made:
        made.remove_workspace(ws_id)
    _, resources = made.inventory()
    for found in resources:
        made.remove(found)


@pytest.fixture(scope="module")
def image_spec(runtime, tmp_path_factory):
    """A run spec of the control image (Debian with socat and procps), as a config
    naming that image gives it."""
    folder = tmp_path_factory.mktemp("contract") / "repo"
    (folder / ".devcontainer").mkdir(parents=True)
    config = {"image": CONTROL_IMAGE, "containerEnv": {"FROM_CONFIG": "yes"}}
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    plan = dc.plan(dc.load(folder), feature_cache=folder.parent / "cache")
    return plan, dc.build(plan, runtime)


def _workspace(runtime, image_spec, ws_id: int, **options):
    plan, built = image_spec
    ref = WorkspaceRef(runtime.instance, ws_id, "contract", f"c{ws_id}")
    spec = dc.run_spec(plan, built, workspace_volume=runtime.volume_name(ref, "workspace"))
    runtime.made.append(ws_id)
    created = runtime.create(ref, spec, LIMITS, "/root", **options)
    return ref, runtime.start(created.id)


def test_lifecycle_create_start_stop_start_discard(runtime, image_spec):
    plan, built = image_spec
    ref = WorkspaceRef(runtime.instance, 1, "contract", "life")
    spec = dc.run_spec(plan, built, workspace_volume=runtime.volume_name(ref, "workspace"))
    runtime.made.append(1)
    created = runtime.create(ref, spec, LIMITS, "/root")
    assert (created.workspace_id, created.status, created.started_at) == (1, "created", None)
    assert runtime.find(1) == created
    first = runtime.start(created.id)
    assert first.running and first.started_at and first.remote_user == "root"
    placed = runtime.placement(created.id)
    assert placed.instance_id == created.id and placed.address and placed.host
    assert placed.folder == spec.workspace_folder
    runtime.stop(created.id, grace_seconds=1)
    stopped = runtime.poll(created.id)
    assert stopped.status == "exited" and not stopped.running
    assert runtime.placement(created.id).address is None
    again = runtime.start(created.id)
    assert again.running and again.started_at != first.started_at  # compared as written
    runtime.discard(created.id)
    assert runtime.poll(created.id) is None and runtime.find(1) is None
    runtime.discard(created.id)  # twice is fine
    with pytest.raises(ProvisionError):
        runtime.start(created.id)
    # Volumes outlive the container: work is kept until the workspace is removed.
    assert {v.role for v in runtime.volumes(1)} >= {"workspace", "home"}
    runtime.remove_workspace(1)
    assert runtime.volumes(1) == []


def test_exec_exit_codes_streams_stdin_and_environment(runtime, image_spec):
    _, running = _workspace(runtime, image_spec, 2)
    done = runtime.exec(running.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.exit_code, done.stdout, done.stderr, done.timed_out) == (
        3,
        "out\n",
        "err\n",
        False,
    )
    fed = runtime.exec(running.id, ["cat"], stdin=b"\x00binary\xff")
    assert fed.exit_code == 0 and fed.stdout.encode(errors="replace").startswith(b"\x00binary")
    # A command that never reads its input cannot hold the caller past its deadline,
    # however much input waits (more than any socket buffer), and one that stops reading
    # half-way is no error of the caller's.
    stuck = runtime.exec(running.id, ["sleep", "60"], stdin=b"x" * (32 << 20), timeout=2)
    assert stuck.timed_out and stuck.exit_code == -1
    early = runtime.exec(running.id, ["head", "-c", "3"], stdin=b"y" * (32 << 20), timeout=30)
    assert (early.exit_code, early.stdout, early.timed_out) == (0, "yyy", False)
    env = runtime.exec(running.id, ["sh", "-c", "echo $FROM_CONFIG $EXTRA"], env={"EXTRA": "x"})
    assert env.stdout == "yes x\n"
    where = runtime.exec(running.id, ["pwd"], workdir="/tmp")
    assert where.stdout == "/tmp\n"
    events = list(runtime.exec_stream(running.id, ["sh", "-c", "echo a; sleep 0.2; echo b"]))
    assert isinstance(events[-1], ExecEnd) and events[-1].exit_code == 0
    assert b"".join(data for stream, data in events[:-1]) == b"a\nb\n"
    code, output = runtime.run(running.id, ["sh", "-c", "echo one; echo two >&2; exit 4"])
    assert code == 4 and sorted(output.split()) == ["one", "two"]
    with pytest.raises(ProvisionError):
        runtime.exec("0" * 64, ["true"])  # no such workspace: the runtime's own error


def _processes(runtime, instance_id: str) -> str:
    return runtime.exec(instance_id, ["ps", "-eo", "args"]).stdout


def test_a_timeout_and_end_exec_end_the_command_and_what_it_started(runtime, image_spec):
    _, running = _workspace(runtime, image_spec, 3)
    started = time.monotonic()
    done = runtime.exec(running.id, ["sh", "-c", "sleep 301 & sleep 302"], timeout=1)
    assert done.timed_out and done.exit_code == -1 and time.monotonic() - started < 20
    wait_until(
        lambda: "sleep 302" not in _processes(runtime, running.id), 15, what="the command ended"
    )
    exec_id, sock = runtime.open_exec(running.id, ["sh", "-c", "sleep 303 & sleep 304"])
    try:
        wait_until(lambda: "sleep 304" in _processes(runtime, running.id), 15, what="it runs")
        runtime.end_exec(exec_id, grace_seconds=1)
    finally:
        sock.close()
    wait_until(lambda: "sleep 30" not in _processes(runtime, running.id), 15, what="its tree ended")
    assert runtime.exec_exit_code(exec_id) is not None


def test_files_are_written_inside_as_the_user_and_the_keepalive_mark_read(runtime, image_spec):
    _, running = _workspace(runtime, image_spec, 4)
    runtime.write_file(running.id, "/tmp/note", b"hello\n", "root")
    read = runtime.exec(running.id, ["stat", "-c", "%a %U", "/tmp/note"])
    assert read.stdout == "600 root\n"
    assert runtime.exec(running.id, ["cat", "/tmp/note"]).stdout == "hello\n"
    with pytest.raises(ProvisionError, match="/nowhere/note"):
        runtime.write_file(running.id, "/nowhere/note", b"x", "root")
    assert runtime.read_keepalive(running.id, "root") is None
    runtime.exec(running.id, ["sh", "-c", "echo 'by vim' > /run/berth/keepalive"])
    mark = runtime.read_keepalive(running.id, "root")
    assert mark is not None and mark[1] == "by vim" and abs(mark[0] - time.time()) < 120
    # A link where the mark should be is not followed.
    runtime.exec(
        running.id, ["sh", "-c", "rm /run/berth/keepalive; ln -s /etc/passwd /run/berth/keepalive"]
    )
    assert runtime.read_keepalive(running.id, "root") is None


def test_a_tunnel_reaches_the_workspace_s_own_loopback(runtime, image_spec):
    _, running = _workspace(runtime, image_spec, 5)
    runtime.open_exec(
        running.id, ["socat", "TCP-LISTEN:7000,bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"]
    )
    wait_until(lambda: "socat" in _processes(runtime, running.id), 15, what="the listener")

    def echo() -> bytes:
        sock = runtime.open_tunnel(running.id, "127.0.0.1", 7000)
        try:
            sock.sendall(b"ping")
            return sock.recv(4)
        finally:
            sock.close()

    wait_until(lambda: _answers(echo), 15, what="the tunnel answering")
    assert echo() == b"ping"


def _answers(call) -> bool:
    try:
        return call() == b"ping"
    except (OSError, ProvisionError):
        return False


def test_two_workspaces_share_neither_network_nor_volumes(runtime, image_spec):
    _, first = _workspace(runtime, image_spec, 6)
    _, second = _workspace(runtime, image_spec, 7)
    runtime.exec(first.id, ["sh", "-c", "echo mine > /workspaces/repo/secret"])
    assert runtime.exec(second.id, ["cat", "/workspaces/repo/secret"]).exit_code != 0
    there = runtime.placement(second.id).address
    runtime.open_exec(second.id, ["socat", "TCP-LISTEN:7001,fork,reuseaddr", "EXEC:cat"])
    wait_until(lambda: "socat" in _processes(runtime, second.id), 15, what="the listener")
    probe = runtime.exec(
        first.id, ["socat", "-T2", "-", f"TCP:{there}:7001,connect-timeout=3"], stdin=b"x"
    )
    assert probe.exit_code != 0  # not reachable from the other workspace
    own = runtime.exec(second.id, ["socat", "-T2", "-", "TCP:127.0.0.1:7001"], stdin=b"x")
    assert own.exit_code == 0 and own.stdout == "x"  # while it does listen


def test_the_inventory_holds_what_was_made_and_remove_takes_it_away(runtime, image_spec):
    _, running = _workspace(runtime, image_spec, 8)
    instances, resources = runtime.inventory()
    assert running.id in {i.id for i in instances}
    mine = {(r.kind, r.role) for r in resources if r.workspace_id == 8}
    assert {("instance", "workspace"), ("network", "network"), ("volume", "workspace")} <= mine
    usage = runtime.usage(running.id)
    assert usage.memory_limit and usage.cpu_ns >= 0
    for found in [r for r in resources if r.workspace_id == 8 and r.kind == "instance"]:
        runtime.remove(found)
    assert runtime.find(8) is None
    runtime.remove_workspace(8)
    _, resources = runtime.inventory()
    assert [r for r in resources if r.workspace_id == 8] == []


def test_the_seeding_gives_the_folder_to_the_user_and_fills_only_its_volume(runtime, tmp_path):
    """A new workspace volume is the workspace user's, with the repository in it, before
    the first start; a mount inside the folder (a config's volume here, an approved host
    folder elsewhere) gets nothing of the repository, which the engine would otherwise
    unpack into it as root."""
    folder = tmp_path / "repo"
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "from-repo").write_text("x")
    (folder / "top").write_text("y")
    (folder / "link").symlink_to("/etc/shadow")
    look = "stat -c '%u %n' /workspaces/repo /workspaces/repo/top; readlink /workspaces/repo/link"
    for ws_id, mounts in ((21, []), (22, ["type=volume,source=data,target=/workspaces/repo/data"])):
        config = {"image": CONTROL_IMAGE, "mounts": mounts}
        (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
        plan = dc.plan(dc.load(folder), feature_cache=tmp_path / "cache")
        built = dc.build(plan, runtime)
        ref = WorkspaceRef(runtime.instance, ws_id, "contract", f"c{ws_id}")
        spec = dc.run_spec(plan, built, workspace_volume=runtime.volume_name(ref, "workspace"))
        runtime.made.append(ws_id)
        created = runtime.create(ref, spec, LIMITS, "/root")
        runtime.seed_workspace_volume(ref, created.id, 1234, 1234, str(folder))
        started = runtime.start(created.id)
        seen = runtime.exec(started.id, ["sh", "-c", look]).stdout.split("\n")
        assert seen[:3] == ["1234 /workspaces/repo", "1234 /workspaces/repo/top", "/etc/shadow"]
        nested = runtime.exec(started.id, ["ls", "-A", "/workspaces/repo/data"]).stdout.split()
        assert nested == ([] if mounts else ["from-repo"]), ws_id
