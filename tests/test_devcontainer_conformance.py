"""Berth's engine against the reference implementation, on every config of the corpus.

Each config is copied to one path, brought up by ``devcontainer up`` and observed, then
copied afresh to the same path (so ``${localWorkspaceFolder}`` and ``${devcontainerId}``
agree) and brought up by Berth's engine with the same bind mount, and observed the same
way. After a stop and a start, both are observed again (postStart reruns, postCreate does
not). The observations are compared; a report lands in test-artifacts/conformance.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import docker
import pytest

from app import devcontainer as dc
from app.runtime.docker import DockerRuntime
from app.runtime.docker.up import COMPOSE_PROJECT, compose_down, up
from tests import reference
from tests.services import ARTIFACTS

CONFIGS = sorted(p.name for p in (reference.CORPUS / "configs").iterdir() if p.is_dir())
EXTRA_RUNS = {
    "cli-dockerfile-without-features--subfolder": (
        "cli-dockerfile-without-features",
        ".devcontainer/subfolder/devcontainer.json",
    )
}
# Where Berth differs from the reference on purpose; each reason is in the report.
KNOWN_DIFFERENCES = {
    "cli-image-with-parallel-initialize-command": (
        "initializeCommand is not run: on a server the 'local host' is Berth's machine"
    ),
    "synthetic-variables": (
        "initializeCommand is not run: on a server the 'local host' is Berth's machine"
    ),
}
# The reference writes containerEnv into a compose override file with each line break
# as the two characters \n, so the container gets another value than the config's; Berth
# sets the value as written. Its exec then fails on the chdir into a workspaceFolder that
# does not exist, where Berth's starts in /: only the containers are compared.
COMPOSE_ENV_TEXT = {"cli-image-containerEnv-issue"}
FAIL_IN_BOTH = {
    "cli-image-metadata": "onCreateCommand 'three' does not exist, and --privileged is "
    "refused on this host",
    "order-installsAfter-invalid-circular": "circular installsAfter",
    "order-dependsOn-invalid-circular": "circular dependsOn",
}
HOST_ENV = {"DCCORPUS_SET_VAR": "hello"}
# The reference writes a Feature lockfile into the repository; Berth does not write into a
# repository it was asked to run, so the listing leaves that file out. The corpus's
# Features name their markers by `date +%s`: two installs within one second leave one
# file, so the markers are compared as a set (how fast a build runs is not the spec).
VOLATILE = r"^(HOSTNAME|SHLVL|_|OLDPWD|TERM|REMOTE_CONTAINERS\w*)="
OBSERVE = r"""
echo "## id"; id
echo "## pwd"; pwd
echo "## env"; env | sort | grep -v -E '{volatile}'
echo "## files"
for f in /*.txt /*.testmarker /tmp/*.testmarker /tmp/*.log /tmp/postCreate.* /var/test-marker \
         /greeting /usr/local/share/*/*.txt /localFeature* /tmp/*Marker*; do
  [ -e "$f" ] || continue; echo "== $f"
  [ -f "$f" ] && grep -v -E '{volatile}' "$f" | sort
done
echo "## workspace"; ls -A1 "$PWD" 2>&1 | grep -v -E '^\.?devcontainer-lock\.json$' | sort
echo "## magic"; ls /usr/local | grep magic | sed -E 's/-[0-9]+\.testMarker$//' | sort -u
""".replace("{volatile}", VOLATILE)
REPORT: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def cli(docker_client, base_image):
    reference.ensure_corpus_images(docker_client, base_image)
    return reference.ensure_cli()


def _inspect(client: docker.DockerClient, container_id: str) -> dict:
    attrs = client.containers.get(container_id).attrs
    config, host = attrs["Config"], attrs["HostConfig"]
    labels = config.get("Labels") or {}

    def mount_name(mount):
        name = mount.get("Name") or mount.get("Source", "")
        return "<anonymous>" if re.fullmatch(r"[0-9a-f]{64}", name) else name

    return {
        # No USER and USER root are the same user; the reference's UID-update image
        # writes "root" explicitly where the original image said nothing.
        "user": config.get("User") or "root",
        "env": sorted(e for e in config.get("Env") or [] if not re.match(VOLATILE, e)),
        "cmd": config.get("Cmd"),
        "entrypoint": config.get("Entrypoint"),
        "cap_add": sorted(c.upper().removeprefix("CAP_") for c in host.get("CapAdd") or []),
        "security_opt": sorted(host.get("SecurityOpt") or []),
        "init": bool(host.get("Init")),
        "mounts": sorted((m["Type"], m["Destination"], mount_name(m)) for m in attrs["Mounts"]),
        "metadata": json.loads(labels.get("devcontainer.metadata", "[]")),
        "id_labels": {
            k: v
            for k, v in labels.items()
            if k in ("devcontainer.local_folder", "devcontainer.config_file")
        },
        "hostname_flag": host.get("ExtraHosts"),
    }


def _sections(text: str) -> dict:
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def _fresh_copy(name: str, workspace: Path) -> None:
    if workspace.exists():
        shutil.rmtree(workspace)
    shutil.copytree(reference.CORPUS / "configs" / name, workspace, symlinks=True)


def _run_reference(cli, client, workspace: Path, config: str | None) -> dict:
    env = {**os.environ, **HOST_ENV}
    env.pop("DCCORPUS_UNSET_VAR", None)
    result = reference.up(cli, workspace, env, config)
    if result.get("outcome") != "success":
        _remove_containers(client, workspace)
        return {"failed": result.get("message") or result.get("description") or "failed"}
    cid = result["containerId"]
    try:
        first = reference.exec_script(cli, workspace, OBSERVE, env, config)
        inspected = _inspect(client, cid)
        inspected["project"] = result.get("composeProjectName")
        inspected["services"] = _services(client, cid)
        client.containers.get(cid).stop(timeout=2)
        reference.up(cli, workspace, env, config)
        second = reference.exec_script(cli, workspace, OBSERVE, env, config)
    finally:
        _remove_containers(client, workspace)
    return {"first": _sections(first), "second": _sections(second), "inspect": inspected}


def unique_folder(name: str) -> str:
    """A compose project is named after the repository's folder, and its containers after
    the project: a suffix keeps two test runs on one engine apart (both tools see the same
    folder, so they still agree)."""
    configs = (reference.CORPUS / "configs" / name).rglob("devcontainer.json")
    if any("dockerComposeFile" in p.read_text(errors="replace") for p in configs):
        return f"{name}-{uuid.uuid4().hex[:6]}"
    return name


def _remove_containers(client: docker.DockerClient, workspace: Path) -> None:
    """Remove what a run left behind (the reference keeps failed containers), and with a
    compose config the project's other containers, network and volumes."""
    label = f"devcontainer.local_folder={workspace}"
    projects = set()
    for container in client.containers.list(all=True, filters={"label": label}):
        projects.add((container.labels or {}).get(COMPOSE_PROJECT))
        container.remove(force=True, v=True)
    for project in projects - {None}:
        compose_down(DockerRuntime(client, "test"), project)


def _services(client: docker.DockerClient, container_id: str) -> list:
    """A compose project's running containers: service, image's config user, env."""
    project = (client.containers.get(container_id).labels or {}).get(COMPOSE_PROJECT)
    if not project:
        return []
    found = []
    for other in client.containers.list(filters={"label": f"{COMPOSE_PROJECT}={project}"}):
        env = sorted(e for e in other.attrs["Config"].get("Env") or [] if not re.match(VOLATILE, e))
        found.append((other.labels.get("com.docker.compose.service"), env))
    return sorted(found)


def _run_berth(client, workspace: Path, config: str | None) -> dict:
    local_env = {"PATH": os.environ["PATH"], **HOST_ENV}
    approvals = dc.Approvals(
        privileged=True,
        capabilities=frozenset({"NET_ADMIN", "SYS_PTRACE"}),
        security_opts=frozenset({"seccomp=unconfined"}),
        host_mounts=True,
    )
    try:
        loaded = dc.load(workspace, config)
        plan = dc.plan(
            loaded,
            local_env=local_env,
            approvals=approvals,
            feature_cache=workspace.parent / "feature-cache",
        )
        built = dc.build(plan, DockerRuntime(client, "test"))
        spec = dc.run_spec(plan, built, approvals=approvals)
        container = up(DockerRuntime(client, "test"), spec)
    except dc.DevcontainerError as exc:
        return {"failed": str(exc)}
    except docker.errors.APIError as exc:
        return {"failed": f"docker: {exc.explanation or exc}"}
    try:
        session = dc.Session(DockerRuntime(client, "test"), container.id, spec)
        first = session.run_command(["/bin/sh", "-c", OBSERVE], "observe").output
        inspected = _inspect(client, container.id)
        inspected["project"] = spec.compose.project if spec.compose else None
        inspected["services"] = _services(client, container.id)
        container.stop(timeout=2)
        container.start()
        dc.run_lifecycle(DockerRuntime(client, "test"), container.id, spec)
        second = (
            dc.Session(DockerRuntime(client, "test"), container.id, spec)
            .run_command(["/bin/sh", "-c", OBSERVE], "observe")
            .output
        )
    finally:
        _remove_containers(client, workspace)
    return {"first": _sections(first), "second": _sections(second), "inspect": inspected}


def _differences(ref: dict, ours: dict) -> list[str]:
    found = []
    for phase in ("first", "second"):
        for key in sorted(set(ref[phase]) | set(ours[phase])):
            if ref[phase].get(key) != ours[phase].get(key):
                found.append(f"{phase} {key}")
    for key in ref["inspect"]:
        if ref["inspect"][key] != ours["inspect"][key]:
            found.append(f"inspect {key}")
    return found


@pytest.mark.parametrize("name", [*CONFIGS, *EXTRA_RUNS])
def test_agrees_with_the_reference(name, cli, docker_client, tmp_path_factory):
    folder, config = EXTRA_RUNS.get(name, (name, None))
    workspace = tmp_path_factory.mktemp("corpus") / unique_folder(folder)
    _fresh_copy(folder, workspace)
    ref = _run_reference(cli, docker_client, workspace, config)
    _fresh_copy(folder, workspace)
    ours = _run_berth(docker_client, workspace, config)

    if name in FAIL_IN_BOTH:
        REPORT[name] = ("both fail", FAIL_IN_BOTH[name] + f" | Berth: {ours.get('failed')}")
        assert "failed" in ref, "the reference was expected to fail"
        assert "failed" in ours, "Berth was expected to fail"
        return
    assert "failed" not in ref, f"reference failed: {ref.get('failed')}"
    assert "failed" not in ours, f"Berth failed: {ours['failed']}"
    if name in COMPOSE_ENV_TEXT:
        assert not ref["first"], "the reference's exec was expected to fail"
        ours["first"], ours["second"] = {}, {}
        for key in ("env", "services"):
            ours["inspect"][key] = _newlines_as_text(ours["inspect"][key])
    differences = _differences(ref, ours)
    if name in KNOWN_DIFFERENCES:
        REPORT[name] = ("differs (known)", f"{KNOWN_DIFFERENCES[name]}: {', '.join(differences)}")
        return
    REPORT[name] = ("agrees", "") if not differences else ("DIFFERS", ", ".join(differences))
    detail = {d: (_pick(ref, d), _pick(ours, d)) for d in differences}
    assert not differences, json.dumps(detail, indent=1, default=str)


def _newlines_as_text(value):
    if isinstance(value, str):
        return value.replace("\n", "\\n")
    if isinstance(value, list | tuple):
        return type(value)(_newlines_as_text(v) for v in value)
    if isinstance(value, dict):
        return {k: _newlines_as_text(v) for k, v in value.items()}
    return value


def _pick(observed: dict, difference: str):
    phase, key = difference.split(" ", 1)
    return observed[phase].get(key) if phase != "inspect" else observed["inspect"][key]


def teardown_module(module):
    if not REPORT:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    counts: dict[str, int] = {}
    lines = [
        "# Conformance with @devcontainers/cli " + reference.CLI_VERSION,
        "",
        "| config | result | detail |",
        "|---|---|---|",
    ]
    for name in sorted(REPORT):
        result, detail = REPORT[name]
        counts[result] = counts.get(result, 0) + 1
        lines.append(f"| {name} | {result} | {detail.replace('|', '/')} |")
    lines += ["", ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))]
    (ARTIFACTS / "conformance.md").write_text("\n".join(lines) + "\n")
