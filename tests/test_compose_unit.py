"""Compose configs in the devcontainer engine, without an engine: how the files are read,
merged and interpolated, which services start in which order, and the run spec of the
devcontainer's service (the corpus's compose configs run against the reference in
test_devcontainer_conformance)."""

from __future__ import annotations

import json

import pytest

from app import devcontainer as dc
from app.devcontainer import compose
from app.devcontainer.build import BuildResult
from app.devcontainer.plan import plan
from tests.dcfiles import write

BASE = "debian:bookworm"


def repo(tmp_path, config: dict, files: dict[str, str]):
    folder = tmp_path / "myrepo"
    write(folder, json.dumps(config))
    for name, text in files.items():
        write(folder, text, name=name)
    return folder


def planned(folder, **options):
    return plan(dc.load(folder), **options)


def test_files_merge_as_compose_merges_them(tmp_path):
    folder = repo(
        tmp_path,
        {"dockerComposeFile": ["a.yml", "b.yml"], "service": "app", "workspaceFolder": "/w"},
        {
            ".devcontainer/a.yml": f"""
services:
  app:
    image: {BASE}
    command: sleep 1
    environment: {{A: "1", SHARED: a}}
    volumes: ["..:/w", "cache:/cache"]
  db:
    image: {BASE}
volumes: {{cache: {{}}}}
""",
            ".devcontainer/b.yml": """
services:
  app:
    command: ["sleep", "infinity"]
    environment: ["SHARED=b", "B=2"]
    labels: {team: core}
    volumes: ["other:/cache"]
volumes: {other: {}}
""",
        },
    )
    result = planned(folder)
    app = result.compose.services["app"]
    assert app.command == ["sleep", "infinity"]
    assert app.environment == {"A": "1", "SHARED": "b", "B": "2"}
    assert app.labels == {"team": "core"}
    # One mount per target: the later file's wins.
    assert [(v.kind, v.target, v.source) for v in app.volumes] == [
        ("bind", "/w", str(folder)),
        ("volume", "/cache", "other"),
    ]
    assert result.compose.name == "myrepo_devcontainer"
    assert result.kind == "image" and result.image == BASE
    assert result.workspace_folder == "/w"


def test_interpolation_takes_dotenv_and_the_owner_never_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SECRET", "do-not-leak")
    folder = repo(
        tmp_path,
        {"dockerComposeFile": "c.yml", "service": "app"},
        {
            ".devcontainer/c.yml": f"""
services:
  app:
    image: {BASE}
    environment:
      FROM_DOTENV: ${{TAG}}
      DEFAULTED: ${{MISSING:-fallback}}
      EMPTY_KEPT: ${{EMPTY-unused}}
      DOLLAR: $$HOME
      OWNER: $OWNER_VAR
      SERVER: "${{SERVER_SECRET}}"
      PLUS: ${{TAG:+set}}
""",
            ".devcontainer/.env": "TAG=v1\nEMPTY=\nCOMPOSE_PROJECT_NAME=My.Project\n",
        },
    )
    result = planned(folder, local_env={"OWNER_VAR": "mine"})
    assert result.compose.services["app"].environment == {
        "FROM_DOTENV": "v1",
        "DEFAULTED": "fallback",
        "EMPTY_KEPT": "",
        "DOLLAR": "$HOME",
        "OWNER": "mine",
        "SERVER": "",
        "PLUS": "set",
    }
    assert result.compose.name == "myproject"


def test_a_required_variable_and_a_bad_interpolation_are_named(tmp_path):
    with pytest.raises(dc.ConfigError, match=r"DB_PASSWORD must be set \(set it in .env\)"):
        compose.interpolate("${DB_PASSWORD:?set it in .env}", {}, "c.yml")
    with pytest.raises(dc.ConfigError, match="invalid interpolation"):
        compose.interpolate("${1abc}", {}, "c.yml")
    assert compose.interpolate("a$$b ${X:-z} $X.", {"X": ""}, "c.yml") == "a$b z ."


def test_services_start_after_their_dependencies_and_only_those_asked(tmp_path):
    files = {
        ".devcontainer/c.yml": f"""
services:
  app: {{image: {BASE}, depends_on: [api]}}
  api: {{image: {BASE}, depends_on: {{db: {{condition: service_started}}}}}}
  db: {{image: {BASE}}}
  docs: {{image: {BASE}}}
"""
    }
    folder = repo(tmp_path, {"dockerComposeFile": "c.yml", "service": "app"}, files)
    project = planned(folder).compose
    assert project.started("app", None) == ["db", "api", "docs", "app"]
    assert project.started("app", []) == ["db", "api", "app"]
    assert project.started("app", ["docs"]) == ["docs", "db", "api", "app"]

    folder2 = repo(
        tmp_path / "b",
        {"dockerComposeFile": "c.yml", "service": "app", "runServices": ["nope"]},
        files,
    )
    with pytest.raises(dc.ConfigError, match="there is no service 'nope'"):
        planned(folder2)
    folder3 = repo(
        tmp_path / "c",
        {"dockerComposeFile": "c.yml", "service": "ghost"},
        files,
    )
    with pytest.raises(dc.ConfigError, match="service 'ghost' is not in the compose files"):
        planned(folder3)


def test_a_circle_of_dependencies_is_refused(tmp_path):
    folder = repo(
        tmp_path,
        {"dockerComposeFile": "c.yml", "service": "a"},
        {
            ".devcontainer/c.yml": f"""
services:
  a: {{image: {BASE}, depends_on: [b]}}
  b: {{image: {BASE}, depends_on: [a]}}
"""
        },
    )
    with pytest.raises(dc.ConfigError, match="in a circle"):
        planned(folder)


def _spec(folder, volume="berth-x-ws-1-workspace", **build):
    result = planned(folder)
    built = BuildResult(
        image=result.image or "built",
        image_id="sha256:1",
        cached=True,
        label_entries=[result.config_entry],
        image_entrypoint=build.get("entrypoint", []),
        image_cmd=build.get("cmd", ["bash"]),
        service_images={n: s.image or "built" for n, s in result.compose.services.items()},
    )
    return dc.run_spec(result, built, workspace_volume=volume)


def test_the_run_spec_of_the_service(tmp_path):
    folder = repo(
        tmp_path,
        {
            "dockerComposeFile": "../docker-compose.yml",
            "service": "app",
            "workspaceFolder": "/workspaces/${localWorkspaceFolderBasename}",
            "containerEnv": {"SHARED": "devcontainer"},
        },
        {
            "docker-compose.yml": f"""
services:
  app:
    image: {BASE}
    user: dev
    command: sleep infinity
    environment: {{SHARED: compose, ONLY: compose}}
    volumes: ["..:/workspaces:cached"]
  db:
    image: {BASE}
    volumes: ["data:/var/lib/data", "/scratch"]
volumes: {{data: {{}}}}
"""
        },
    )
    spec = _spec(folder)
    # The compose file mounts the repository's parent folder; on a server only the
    # repository exists, as the workspace volume where it would appear.
    assert vars(spec.workspace_mount) == {
        "type": "volume",
        "source": "berth-x-ws-1-workspace",
        "target": "/workspaces/myrepo",
    }
    assert spec.workspace_folder == "/workspaces/myrepo"
    assert spec.env == {"SHARED": "devcontainer", "ONLY": "compose"}
    assert spec.container_user == "dev" and spec.remote_user == "dev"
    # overrideCommand is false on compose unless set: the service's command runs.
    assert spec.entrypoint[:2] == ["/bin/sh", "-c"] and spec.command == ["sleep", "infinity"]
    assert spec.compose.project == "myrepo" and spec.compose.service == "app"
    (db,) = spec.compose.services
    assert db.name == "db" and db.mounts == [
        {"type": "volume", "source": "data", "target": "/var/lib/data"},
        {"type": "volume", "target": "/scratch"},
    ]
    assert spec.compose.volumes == ["data"]


def test_override_command_and_no_repository_mount(tmp_path):
    folder = repo(
        tmp_path,
        {"dockerComposeFile": "c.yml", "service": "app", "overrideCommand": True},
        {".devcontainer/c.yml": f"services:\n  app: {{image: {BASE}, command: exit 3}}\n"},
    )
    spec = _spec(folder)
    assert spec.command == []
    assert spec.workspace_folder == "/"
    # Berth still keeps the repository, in the workspace volume at /workspaces/<name>.
    assert spec.workspace_mount.target == "/workspaces/myrepo"
