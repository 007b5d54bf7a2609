"""The engine on the real Docker engine: cached builds, labels, logs, and failures that
name their cause and leave nothing behind."""

import json
import re
import time

import docker
import pytest

from app import devcontainer as dc
from app.devcontainer.metadata import LABEL
from app.runtime.docker import DockerRuntime
from app.runtime.docker.up import up
from tests.dcfiles import feature, write


def _snapshot(client) -> set[str]:
    """Short ids of every image and container now (the engine may be shared: a test
    compares only the ones its own build names, see ``_left_by``)."""
    return {i.id.split(":")[-1][:12] for i in client.images.list(all=True)} | {
        c.id[:12] for c in client.containers.list(all=True)
    }


def _left_by(log: list[str], before: set[str], client) -> set[str]:
    """Images and containers the build's log names that did not exist before it."""
    named = set()
    for line in log:
        found = re.match(r"^\s*---> (?:Running in )?([0-9a-f]{12})\s*$", line)
        if found:
            named.add(found.group(1))
    return (named & _snapshot(client)) - before


def _build(folder, client, logs=None):
    result = dc.plan(dc.load(folder), feature_cache=folder / "cache")
    return result, dc.build(
        result, DockerRuntime(client, "test"), on_log=(logs.append if logs is not None else print)
    )


def test_cache_hit_builds_nothing(tmp_path, docker_client, base_image):
    feature(tmp_path, "one", containerEnv={"ONE": "1"})
    feature(tmp_path, "two", installsAfter=["./one"])
    # Content no earlier run has built, so the first build really builds.
    (tmp_path / ".devcontainer" / "two" / "install.sh").write_text(
        f"#!/bin/sh\necho {time.time_ns()} > /two\n"
    )
    write(
        tmp_path,
        json.dumps(
            {
                "image": base_image,
                "features": {"./two": {}, "./one": {}},
                "containerEnv": {"COST": '$5 "quoted"'},
            }
        ),
    )
    logs: list[str] = []
    first_plan, first = _build(tmp_path, docker_client, logs)
    assert not first.cached and any("Installing Feature ./two" in line for line in logs)
    assert [f.user_id for f in first_plan.features] == ["./one", "./two"]

    started = time.monotonic()
    _, second = _build(tmp_path, docker_client, logs := [])
    elapsed = time.monotonic() - started
    assert second.cached and second.image == first.image and second.image_id == first.image_id
    assert elapsed < 5  # the bench measures the real figure (well under a second)
    assert logs == [f"using cached image {first.image}"]

    (tmp_path / ".devcontainer" / "one" / "install.sh").write_text("#!/bin/sh\necho changed\n")
    _, third = _build(tmp_path, docker_client)
    assert not third.cached and third.image != first.image

    image = docker_client.images.get(first.image)
    label = json.loads(image.labels[LABEL])
    assert [entry.get("id") for entry in label] == ["./one", "./two", None]
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])
    assert env["ONE"] == "1" and env["COST"] == '$5 "quoted"'


def test_base_image_label_is_kept_and_merged(tmp_path, docker_client, base_image):
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    (base_dir / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        'LABEL devcontainer.metadata=\'[{"id":"from-base","remoteUser":"root",'
        '"postCreateCommand":"echo base"}]\'\n'
    )
    docker_client.images.build(path=str(base_dir), tag="berth-test-labelled:latest", rm=True)
    ws = tmp_path / "ws"
    write(
        ws, json.dumps({"image": "berth-test-labelled:latest", "postCreateCommand": "echo config"})
    )
    _, result = _build(ws, docker_client)
    # No Features: nothing is built; the container carries the composed label.
    assert result.cached and result.image == "berth-test-labelled:latest"
    assert [e.get("id") for e in json.loads(result.container_label)] == ["from-base", None]
    assert [h["origin"] for h in result.merged["postCreateCommands"]] == [
        "from-base",
        "devcontainer.json",
    ]


def test_failing_install_script_names_the_feature_and_leaves_nothing(
    tmp_path, docker_client, base_image
):
    feature(tmp_path, "broken")
    (tmp_path / ".devcontainer" / "broken" / "install.sh").write_text(
        "#!/bin/sh\necho about to fail\nexit 3\n"
    )
    write(tmp_path, json.dumps({"image": base_image, "features": {"./broken": {}}}))
    before = _snapshot(docker_client)
    logs: list[str] = []
    with pytest.raises(dc.BuildError) as error:
        _build(tmp_path, docker_client, logs)
    assert "installing Features failed at Step" in str(error.value)
    assert "returned a non-zero code: 3" in str(error.value)
    assert "about to fail" in error.value.log and "about to fail" in logs
    assert _left_by(error.value.log, before, docker_client) == set()


def test_failing_dockerfile_names_the_step_and_leaves_nothing(tmp_path, docker_client, base_image):
    (tmp_path / ".devcontainer").mkdir()
    (tmp_path / ".devcontainer" / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo step-two-{time.time_ns()} > /ok\nRUN ls /does-not-exist\n"
    )
    write(tmp_path, '{"build": {"dockerfile": "Dockerfile"}}')
    before = _snapshot(docker_client)
    with pytest.raises(dc.BuildError) as error:
        _build(tmp_path, docker_client)
    assert "Step 3/3 : RUN ls /does-not-exist" in str(error.value)
    assert any("Running in" in line for line in error.value.log)
    assert _left_by(error.value.log, before, docker_client) == set()


def test_missing_base_image_is_named(tmp_path, docker_client):
    write(tmp_path, '{"image": "berth-test-no-such-image:1"}')
    with pytest.raises(dc.BuildError, match="'berth-test-no-such-image:1' is not on this host"):
        _build(tmp_path, docker_client)


def test_failed_lifecycle_leaves_no_container(tmp_path, docker_client, base_image):
    write(tmp_path, json.dumps({"image": base_image, "postCreateCommand": "echo no; exit 7"}))
    plan, built = _build(tmp_path, docker_client)
    spec = dc.run_spec(plan, built)
    with pytest.raises(dc.LifecycleError) as error:
        up(DockerRuntime(docker_client, "test"), spec)
    assert str(error.value) == (
        "postCreateCommand: postCreateCommand from devcontainer.json failed with exit code 7"
    )
    mine = {"label": f"devcontainer.local_folder={plan.config.workspace}"}
    assert docker_client.containers.list(all=True, filters=mine) == []


def test_run_spec_on_a_volume(tmp_path, docker_client, base_image):
    write(
        tmp_path,
        json.dumps(
            {
                "image": base_image,
                "remoteEnv": {"WHERE": "${containerWorkspaceFolder}"},
                "forwardPorts": [3000],
                "portsAttributes": {"3000": {"label": "web"}},
                "customizations": {
                    "vscode": {
                        "extensions": ["ms-python.python"],
                        "settings": {"editor.tabSize": 2},
                    }
                },
                "postStartCommand": ["sh", "-c", "echo started >> /tmp/starts"],
            }
        ),
    )
    plan, built = _build(tmp_path, docker_client)
    volume = docker_client.volumes.create(labels={"berth.managed": "true", "berth.test": "1"})
    try:
        spec = dc.run_spec(plan, built, workspace_volume=volume.name)
        assert spec.workspace_mount.type == "volume"
        assert spec.vscode == {
            "extensions": ["ms-python.python"],
            "settings": {"editor.tabSize": 2},
        }
        assert spec.forward_ports == [3000] and spec.ports_attributes["3000"]["label"] == "web"
        container = up(DockerRuntime(docker_client, "test"), spec)
        try:
            session = dc.Session(DockerRuntime(docker_client, "test"), container.id, spec)
            out = session.run_command(["sh", "-c", "pwd; echo $WHERE; cat /tmp/starts"], "t")
            folder = f"/workspaces/{tmp_path.name}"
            assert out.output.splitlines() == [folder, folder, "started"]
        finally:
            container.remove(force=True)
    finally:
        volume.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume.name)


def _config(folder, image: str, config: dict) -> None:
    """Write a devcontainer.json on ``image`` with ``config``'s properties."""
    write(folder, json.dumps({"image": image, **config}))


class CountingRuntime(DockerRuntime):
    """The Docker runtime, counting the commands it runs in containers."""

    def __init__(self, client):
        super().__init__(client, "test")
        self.runs: list[list[str]] = []

    def run(self, container_id, argv, **options):
        self.runs.append(argv)
        return super().run(container_id, argv, **options)


def test_each_phase_is_one_exec_with_the_references_semantics(tmp_path, docker_client, base_image):
    """Seven commands over every phase: one exec per phase, each command in the
    workspace folder once it exists, output and order as they happen."""
    folder = "/srv/made-by-oncreate"
    _config(
        tmp_path,
        base_image,
        {
            "workspaceFolder": folder,
            "remoteEnv": {"GREETING": "hi"},
            "onCreateCommand": f"pwd > /tmp/1; mkdir -p {folder}",
            "updateContentCommand": ["sh", "-c", "pwd > /tmp/2; printf no-newline"],
            "postCreateCommand": "pwd > /tmp/3; echo $GREETING > /tmp/greeting",
            "postStartCommand": ["sh", "-c", "echo start >> /tmp/starts"],
            "postAttachCommand": "echo attach >> /tmp/attaches",
        },
    )
    plan, built = _build(tmp_path, docker_client)
    spec = dc.run_spec(plan, built)
    spec.workspace_mount = None  # the folder is made by onCreate, not mounted
    runtime = CountingRuntime(docker_client)
    log: list[str] = []
    container = up(runtime, spec, on_log=log.append)
    try:
        phases = 5
        # patch + user lookup, markers + the environment probe, then one per phase
        assert len(runtime.runs) == 2 + phases, runtime.runs
        out = dc.Session(runtime, container.id, spec).run_command(
            ["sh", "-c", "cat /tmp/1 /tmp/2 /tmp/3 /tmp/greeting /tmp/starts /tmp/attaches"], "t"
        )
        # onCreate ran where the container starts; the folder existed for the others.
        assert out.output.split() == ["/", folder, folder, "hi", "start", "attach"]
        assert "no-newline" in log
        ran = [line for line in log if line.startswith("Running the ")]
        assert [line.split()[2] for line in ran] == [
            "onCreateCommand", "updateContentCommand", "postCreateCommand",
            "postStartCommand", "postAttachCommand",
        ]  # fmt: skip
        assert all(not line.startswith("\x1e") and "\x1e" not in line for line in log)
    finally:
        container.remove(force=True)


def test_a_failing_command_in_a_phase_is_named_and_stops_the_rest(
    tmp_path, docker_client, base_image
):
    feature(tmp_path, "one", postCreateCommand="echo from the feature")
    _config(
        tmp_path,
        base_image,
        {
            "features": {"./one": {}},
            "postCreateCommand": "echo first line; printf 'partial'; exit 9",
            "postStartCommand": "touch /tmp/never",
        },
    )
    plan, built = _build(tmp_path, docker_client)
    spec = dc.run_spec(plan, built)
    log: list[str] = []
    with pytest.raises(dc.LifecycleError) as error:
        up(DockerRuntime(docker_client, "test"), spec, on_log=log.append)
    failure = error.value
    assert (failure.hook, failure.origin, failure.exit_code) == (
        "postCreateCommand", "devcontainer.json", 9,
    )  # fmt: skip
    # Only the failing command's own output, not the feature's before it.
    assert failure.output.splitlines() == ["first line", "partial"]
    assert "from the feature" in log
    assert not any("postStartCommand" in line for line in log)


def test_array_commands_run_as_programs_of_their_own(tmp_path, docker_client, base_image):
    """An array is a program and its arguments, as the reference runs it: never a
    built-in, function or assignment of the phase's script, and nothing of one command's
    shell state reaches the next."""
    _config(
        tmp_path,
        base_image,
        {
            "onCreateCommand": ["umask", "077"],  # no such program: fails, 127
        },
    )
    plan, built = _build(tmp_path, docker_client)
    with pytest.raises(dc.LifecycleError) as failed:
        up(DockerRuntime(docker_client, "test"), dc.run_spec(plan, built))
    assert failed.value.exit_code == 127

    _config(
        tmp_path,
        base_image,
        {
            "remoteEnv": {"WITH-DASH": "kept"},
            "onCreateCommand": ["sh", "-c", "umask 077; exit 0"],
            "updateContentCommand": ["echo", "a\\tb"],
            "postCreateCommand": "umask > /tmp/umask",
            # A name no shell passes on: this phase gets an exec of its own.
            "postStartCommand": ["printenv", "WITH-DASH"],
        },
    )
    plan, built = _build(tmp_path, docker_client)
    log: list[str] = []
    container = up(
        DockerRuntime(docker_client, "test"), dc.run_spec(plan, built), on_log=log.append
    )
    try:
        # /bin/echo prints the backslash as it is (a shell's echo would make a tab).
        assert "a\\tb" in log
        assert container.exec_run(["cat", "/tmp/umask"]).output == b"0022\n"
        assert "kept" in log
    finally:
        container.remove(force=True)


def test_odd_homes_and_markers_do_not_break_the_hooks(tmp_path, docker_client, base_image):
    """A HOME with a newline, and a marker that is a directory, are no hook names."""
    _config(
        tmp_path,
        base_image,
        {
            "containerEnv": {"HOME": "/tmp/odd\nhome"},
            "onCreateCommand": 'cd "$HOME/.devcontainer" && rm .postStartCommandMarker '
            "&& mkdir .postStartCommandMarker",
            "postCreateCommand": "echo created > /tmp/created",
        },
    )
    plan, built = _build(tmp_path, docker_client)
    spec = dc.run_spec(plan, built)
    runtime = DockerRuntime(docker_client, "test")
    container = up(runtime, spec)
    try:
        container.restart(timeout=0)
        assert dc.run_lifecycle(runtime, container.id, spec) == []
        assert container.exec_run(["cat", "/tmp/created"]).output == b"created\n"
    finally:
        container.remove(force=True)
