"""The environment people work in, through Berth's doors, against the reference CLI's
``devcontainer exec``: for corpus configs that shape it (remoteEnv with
``${containerEnv:...}``, escaping, the remoteEnv of an image's devcontainer.metadata
label, runArgs' -e), ``env`` through Berth's SSH gateway, its exec API (collected and
streamed) equals the reference's, less what each tool sets for itself (listed below).

How the chain is covered: tests/test_devcontainer_conformance.py shows, for every corpus
config, that the environment Berth's engine works out (the probe plus remoteEnv, what a
workspace records) equals the reference's exec environment; this test shows that SSH
and the API hand exactly that to a person's processes; tests/test_ide.py shows that the
IDE's terminals get what the API gets, less VS Code's own variables."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests import reference
from tests.conftest import start_stack, stop_stack
from tests.test_devcontainer_conformance import HOST_ENV, _remove_containers, unique_folder

pytestmark = pytest.mark.slow

CONFIGS = [
    "cli-image",
    "cli-set-up-with-metadata",
    # compose: remoteEnv with escaping; compose environment, containerEnv over it, a
    # Feature, remoteUser and runServices
    "cli-compose-image-without-features-minimal",
    "synthetic-compose-runservices",
]
# Workspace names are at most 32 characters.
WORKSPACE = {
    "cli-compose-image-without-features-minimal": "compose-minimal",
    "synthetic-compose-runservices": "compose-runservices",
}
# Set by a tool for its own session, not by the config: they differ by design.
OWN = {
    "all": {"HOSTNAME", "SHLVL", "_", "OLDPWD", "PWD"},  # the container's id; the shell's
    "reference": set(),
    "ssh": {"USER", "LOGNAME", "SHELL", "SSH_CONNECTION", "SSH_CLIENT"},  # as sshd sets
    "exec": set(),
}
# ${localEnv:...} is the local machine's environment to the reference; on a server it is
# the owner's, which Berth does not have (docs/devcontainer.md).
LOCAL_ENV = {"cli-image": {"LOCAL_PATH"}}


def _parse(text: str) -> dict[str, str]:
    """`env -0` output: values may hold newlines (the corpus's escaping test does)."""
    found = {}
    for entry in text.split("\0"):
        if "=" in entry:
            key, value = entry.split("=", 1)
            found[key] = value
    return found


def _without(env: dict[str, str], *tools: str, extra: set[str] = frozenset()) -> dict:
    dropped = set(OWN["all"]) | set(extra)
    for tool in tools:
        dropped |= OWN[tool]
    return {k: v for k, v in env.items() if k not in dropped}


@pytest.fixture(scope="module")
def cli(docker_client, base_image):
    reference.ensure_corpus_images(docker_client, base_image)
    return reference.ensure_cli()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client, base_image, cli):
    server = start_stack(tmp_path_factory.mktemp("stack"))
    key = tmp_path_factory.mktemp("keys") / "id_ann"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.clients["ann"].call(
        "POST", "/users/me/keys", 201, json={"public_key": key.with_suffix(".pub").read_text()}
    )
    server.ann_key = key
    yield server
    stop_stack(server)


def _reference_env(cli, docker_client, folder) -> dict[str, str]:
    env = {**os.environ, **HOST_ENV}
    result = reference.up(cli, folder, env)
    assert result.get("outcome") == "success", result.get("message")
    try:
        return _parse(reference.exec_script(cli, folder, "env -0", env))
    finally:
        _remove_containers(docker_client, folder)


@pytest.mark.parametrize("name", CONFIGS)
def test_ssh_and_exec_give_the_references_environment(name, cli, stack, docker_client):
    # One folder for both: ${localWorkspaceFolderBasename} and the workspace folder agree.
    folder = stack.repos / unique_folder(name)
    shutil.copytree(reference.CORPUS / "configs" / name, folder)
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "corpus"],
    ):
        subprocess.run(argv, cwd=folder, check=True)
    theirs = _reference_env(cli, docker_client, folder)

    ann = stack.clients["ann"]
    login = WORKSPACE.get(name, name)
    ws = ann.create(login, repo={"url": str(folder)})
    done = ann.wait(ws["id"], "running", "failed")
    assert done["status"] == "running", ann.log(ws["id"])
    try:
        through_ssh = subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
             "-i", str(stack.ann_key), "-p", str(stack.ssh_port), f"{login}@127.0.0.1", "env -0"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        collected = ann.exec(ws["id"], ["env", "-0"])["stdout"]
        streamed = ann.call(
            "POST",
            f"/workspaces/{ws['id']}/exec",
            200,
            json={"command": ["env", "-0"], "stream": True},
        ).text
        streamed = "".join(
            event["data"]
            for event in map(json.loads, streamed.splitlines())
            if event.get("stream") == "stdout"
        )
        local = LOCAL_ENV.get(name, set())
        expected = _without(theirs, "reference", extra=local)
        assert expected, "the reference gave no environment"
        for tool, text in (("ssh", through_ssh), ("exec", collected), ("exec", streamed)):
            ours = _without(_parse(text), tool, extra=local)
            assert ours == expected, (tool, _diff(expected, ours))
        # What the config set is there (not only what both happen to lack).
        if name in ("cli-image", "cli-compose-image-without-features-minimal"):
            assert re.search(r'"fo\$o": "ba\'r"', expected["TEST_ESCAPING"])
        if name == "cli-image":
            assert expected["TEST_RE"] == "TEST_VALUE3"
        elif name == "cli-set-up-with-metadata":
            assert expected["CONFIG_RE"] == "from-config"
        elif name == "synthetic-compose-runservices":
            assert expected["SHARED"] == "devcontainer-wins" and expected["FROM_EXTRA"] == "1"
    finally:
        ann.delete(ws["id"])
        ann.wait(ws["id"], "deleted", timeout=120)


def _diff(expected: dict, ours: dict) -> dict:
    keys = set(expected) | set(ours)
    return {
        k: (expected.get(k), ours.get(k)) for k in sorted(keys) if expected.get(k) != ours.get(k)
    }
