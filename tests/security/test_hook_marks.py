"""Lifecycle hooks run a phase in one exec whose output carries Berth's marks (which
command runs, which failed). A command can read that script, nonce included, from
/proc: marks it forges must not crash the job, hide a failure or skip a phase."""

import json

import pytest

from app import devcontainer as dc
from app.runtime.docker import DockerRuntime
from app.runtime.docker.up import up
from tests.dcfiles import write

# Finds the phase script's nonce in its parent's command line and prints forged marks:
# an index out of range, a non-number, an "unclaimed" after the fact, a bare tag.
FORGE = (
    "n=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | grep -o 'printf .\\\\036[0-9a-f]*' "
    "| head -n 1 | sed 's/.*036//'); test -n \"$n\" || exit 42; "
    "for m in 'run 99' 'run x' 'run ²' 'failed 7' unclaimed ''; do "
    'printf \'\\036%s %s\\n\' "$n" "$m"; done'
)


def _up(tmp_path, docker_client, base_image, config: dict):
    write(tmp_path, json.dumps({"image": base_image, **config}))
    plan = dc.plan(dc.load(tmp_path), feature_cache=tmp_path / "cache")
    built = dc.build(plan, DockerRuntime(docker_client, "test"), on_log=lambda line: None)
    log: list[str] = []
    spec = dc.run_spec(plan, built)
    container = up(DockerRuntime(docker_client, "test"), spec, on_log=log.append)
    return container, log


def test_forged_marks_are_output_and_the_phases_still_run(tmp_path, docker_client, base_image):
    container, log = _up(
        tmp_path,
        docker_client,
        base_image,
        {"postCreateCommand": FORGE, "postStartCommand": "echo started > /tmp/started"},
    )
    try:
        assert container.exec_run(["cat", "/tmp/started"]).output == b"started\n"
        forged = [line for line in log if line.startswith("\x1e")]
        assert len(forged) == 6, log  # each shown as the command's output
        assert sum(line.startswith("Running the ") for line in log) == 2
    finally:
        container.remove(force=True)


def test_a_forged_mark_does_not_hide_a_failure(tmp_path, docker_client, base_image):
    with pytest.raises(dc.LifecycleError) as failed:
        _up(tmp_path, docker_client, base_image, {"postCreateCommand": FORGE + "; exit 3"})
    assert (failed.value.hook, failed.value.exit_code) == ("postCreateCommand", 3)
