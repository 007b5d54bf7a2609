"""Finding 3 (build inputs outside the repository): a context, a Dockerfile, a config or
a Feature folder that leads out of the checkout is refused by name before anything is
built; links are never followed out of it, FIFOs and devices are never read; and what
stays inside the checkout, links included, still builds. The engine is driven directly
here; the full stack shows the same refusals in tests/security/test_host_boundary.py."""

from __future__ import annotations

import json
import os
import secrets

import pytest

from app import devcontainer as dc
from app.runtime.docker import DockerRuntime
from tests.dcfiles import feature, write


@pytest.fixture
def canary(tmp_path):
    """A host file no workspace may read: outside every repository below."""
    path = tmp_path / "host" / "canary.txt"
    path.parent.mkdir()
    path.write_text(f"CANARY-{secrets.token_hex(8)}\n")
    return path


def _plan(repo):
    return dc.plan(dc.load(repo), feature_cache=repo.parent / "cache")


def _refused(repo, *words: str):
    with pytest.raises(dc.DevcontainerError) as error:
        _plan(repo)
    for word in words:
        assert word in str(error.value), str(error.value)
    return str(error.value)


def test_a_context_or_dockerfile_outside_the_repository_is_refused(tmp_path, canary):
    repo = tmp_path / "repo"
    (repo / ".devcontainer").mkdir(parents=True)
    (repo / ".devcontainer" / "Dockerfile").write_text("FROM scratch\n")
    for context in ("../../..", "../../host", "/etc", "../" * 12 + "etc"):
        write(repo, json.dumps({"build": {"dockerfile": "Dockerfile", "context": context}}))
        message = _refused(repo, "build.context", "outside the repository")
        assert canary.read_text() not in message
    for dockerfile in ("../../host/canary.txt", "/etc/passwd", "../" * 12 + "etc/passwd"):
        write(repo, json.dumps({"build": {"dockerfile": dockerfile}}))
        _refused(repo, "build.dockerfile", "outside the repository")
    # The same through links that point out of the repository.
    (repo / ".devcontainer" / "ctx").symlink_to(canary.parent)
    write(repo, json.dumps({"build": {"dockerfile": "Dockerfile", "context": "ctx"}}))
    _refused(repo, "build.context", "outside the repository")
    (repo / ".devcontainer" / "Linked").symlink_to(canary)
    write(repo, json.dumps({"build": {"dockerfile": "Linked"}}))
    _refused(repo, "build.dockerfile", "outside the repository")


def test_a_config_that_is_a_link_out_or_a_fifo_is_refused(tmp_path, canary):
    repo = tmp_path / "repo"
    (repo / ".devcontainer").mkdir(parents=True)
    (repo / ".devcontainer" / "devcontainer.json").symlink_to(canary)
    with pytest.raises(dc.ConfigError, match="outside the repository") as error:
        dc.load(repo)
    assert canary.read_text().strip() not in str(error.value)
    (repo / ".devcontainer" / "devcontainer.json").unlink()
    os.mkfifo(repo / ".devcontainer" / "devcontainer.json")
    # Returns at once both ways: a FIFO is never opened for reading.
    with pytest.raises(dc.ConfigError, match="no devcontainer.json"):
        dc.load(repo)
    with pytest.raises(dc.ConfigError, match="not a regular file"):
        dc.load(repo, ".devcontainer/devcontainer.json")


def test_fifos_devices_and_huge_files_are_never_read(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".devcontainer").mkdir(parents=True)
    os.mkfifo(repo / ".devcontainer" / "Dockerfile")
    write(repo, json.dumps({"build": {"dockerfile": "Dockerfile"}}))
    _refused(repo, "build.dockerfile", "not a regular file")
    (repo / ".devcontainer" / "Dockerfile").unlink()
    (repo / ".devcontainer" / "Dockerfile").symlink_to("/dev/zero")
    _refused(repo, "build.dockerfile", "outside the repository")
    (repo / ".devcontainer" / "Dockerfile").unlink()
    with (repo / ".devcontainer" / "Dockerfile").open("wb") as big:
        big.truncate(64 * 1024 * 1024)  # sparse: 64 MB of nothing
    _refused(repo, "build.dockerfile", "at most")


def test_a_local_feature_with_a_link_out_is_refused_before_building(
    tmp_path, canary, docker_client, base_image
):
    repo = tmp_path / "repo"
    feature(repo, "leaky")
    folder = repo / ".devcontainer" / "leaky"
    (folder / "install.sh").unlink()
    (folder / "install.sh").symlink_to(canary)
    write(repo, json.dumps({"image": base_image, "features": {"./leaky": {}}}))
    plan = _plan(repo)
    before = {c.id for c in docker_client.containers.list(all=True)}
    logs: list[str] = []
    with pytest.raises(dc.DevcontainerError, match="outside the repository") as error:
        dc.build(plan, DockerRuntime(docker_client, "test"), on_log=logs.append)
    assert canary.read_text().strip() not in str(error.value) + "\n".join(logs)
    assert {c.id for c in docker_client.containers.list(all=True)} == before
    # The folder itself as a link out of the repository: refused when it is named.
    (repo / ".devcontainer" / "elsewhere").symlink_to(canary.parent)
    write(repo, json.dumps({"image": base_image, "features": {"./elsewhere": {}}}))
    _refused(repo, "features.", "outside the repository")


def test_links_that_stay_inside_the_repository_build_and_links_out_stay_links(
    tmp_path, canary, docker_client, base_image
):
    """The legitimate use: a Feature whose install.sh is a link to a script elsewhere in
    the repository, and a context with a link to another file of the repository. A link
    pointing out of it travels as a link: in the image it points at the image's own file,
    never the host's."""
    repo = tmp_path / "repo"
    feature(repo, "shared")
    (repo / "scripts").mkdir()
    marker = f"inside-{secrets.token_hex(4)}"
    (repo / "scripts" / "install.sh").write_text(f"#!/bin/sh\necho {marker} > /feature-ran\n")
    folder = repo / ".devcontainer" / "shared"
    (folder / "install.sh").unlink()
    (folder / "install.sh").symlink_to("../../scripts/install.sh")
    (repo / "data.txt").write_text("repository data\n")
    (repo / "alias.txt").symlink_to("data.txt")
    (repo / "hostname-link").symlink_to(canary)
    (repo / ".devcontainer" / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /src\n")
    write(
        repo,
        json.dumps(
            {
                "build": {"dockerfile": "Dockerfile", "context": ".."},
                "features": {"./shared": {}},
            }
        ),
    )
    built = dc.build(_plan(repo), DockerRuntime(docker_client, "test"), on_log=lambda line: None)
    out = docker_client.containers.run(
        built.image,
        [
            "sh",
            "-c",
            "cat /feature-ran /src/alias.txt; readlink /src/hostname-link; "
            "cat /src/hostname-link 2>&1 || true",
        ],
        remove=True,
        network_disabled=True,
    ).decode()
    assert marker in out and "repository data" in out
    assert str(canary) in out  # the link itself...
    assert canary.read_text().strip() not in out  # ...never the host file's content
