"""An image named by its id on the engine: the engine looks a bare hex word (or
"sha256:" and a prefix) up as a prefix of the id of any image it holds, so a config's
"image", a Dockerfile's FROM or COPY --from, or a compose service's image could start a
workspace from another person's build, their repository inside. Each is refused by name;
the same words with a tag or a digest are names and go on as before."""

from __future__ import annotations

import json

import pytest

from app import devcontainer as dc
from tests.dcfiles import write as write_one


def write(repo, files: dict) -> None:
    for name, text in files.items():
        write_one(repo, text, name)


def _plan(repo):
    return dc.plan(dc.load(repo), feature_cache=repo.parent / "cache")


@pytest.fixture
def someone_elses_id(docker_client, base_image) -> str:
    """A prefix of an image on this engine, which the engine itself resolves."""
    prefix = docker_client.images.get(base_image).id.split(":", 1)[1][:10]
    assert docker_client.images.get(prefix).id == docker_client.images.get(base_image).id
    return prefix


@pytest.mark.parametrize("form", ["{id}", "sha256:{id}", "{ID}"])
def test_a_config_image_named_by_an_id_is_refused(tmp_path, someone_elses_id, form):
    ref = form.format(id=someone_elses_id, ID=someone_elses_id.upper())
    repo = tmp_path / "repo"
    write(repo, {".devcontainer/devcontainer.json": json.dumps({"image": ref})})
    with pytest.raises(dc.DevcontainerError, match="names an image by its id") as error:
        _plan(repo)
    assert "image" in str(error.value)


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM {id}\n",
        "FROM sha256:{id} AS base\nFROM base\n",
        "FROM berth-base:bookworm\nCOPY --from={id} /etc/passwd /tmp/x\n",
    ],
)
def test_a_dockerfile_starting_from_or_copying_an_id_is_refused(
    tmp_path, someone_elses_id, dockerfile
):
    repo = tmp_path / "repo"
    write(
        repo,
        {
            ".devcontainer/devcontainer.json": json.dumps({"build": {"dockerfile": "Dockerfile"}}),
            ".devcontainer/Dockerfile": dockerfile.format(id=someone_elses_id),
        },
    )
    with pytest.raises(dc.DevcontainerError, match="names an image by its id"):
        _plan(repo)


def test_a_compose_service_image_named_by_an_id_is_refused(tmp_path, someone_elses_id):
    repo = tmp_path / "repo"
    write(
        repo,
        {
            ".devcontainer/devcontainer.json": json.dumps(
                {"dockerComposeFile": "compose.yaml", "service": "app", "workspaceFolder": "/w"}
            ),
            ".devcontainer/compose.yaml": (
                "services:\n  app:\n    image: berth-base:bookworm\n"
                f"  db:\n    image: {someone_elses_id}\n"
            ),
        },
    )
    with pytest.raises(dc.DevcontainerError, match="names an image by its id"):
        _plan(repo)


@pytest.mark.parametrize("ref", ["berth-base:bookworm", "cafe:latest", "deadbeef/tools:1"])
def test_names_that_look_like_hex_but_carry_a_tag_or_path_are_names(tmp_path, ref):
    repo = tmp_path / "repo"
    write(repo, {".devcontainer/devcontainer.json": json.dumps({"image": ref})})
    assert _plan(repo).config is not None
