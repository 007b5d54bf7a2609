"""Attacks through a repository's compose files: they are hostile data. Nothing of the
host (paths, namespaces, devices, the server's environment), of Berth (its labels, its
mount points) or of another workspace is reachable through them; each refusal names the
property, and the allowed use sits beside it."""

from __future__ import annotations

import json
import os

import pytest

from app import devcontainer as dc
from app.devcontainer.plan import plan
from app.runtime import Limits, WorkspaceRef
from app.runtime.docker import spec as specs
from tests.dcfiles import write

BASE = "debian:bookworm"


def _repo(tmp_path, service: str, extra: str = "", config: dict | None = None):
    folder = tmp_path / "repo"
    write(folder, json.dumps({"dockerComposeFile": "c.yml", "service": "app", **(config or {})}))
    write(folder, f"services:\n  app:\n{service}\n{extra}", name=".devcontainer/c.yml")
    return folder


def _plan(folder, approvals=None):
    return plan(dc.load(folder), approvals=approvals)


@pytest.mark.parametrize(
    "volume",
    [
        "/etc:/host-etc",
        "/var/run/docker.sock:/var/run/docker.sock",
        "~/.ssh:/keys",
        "../../../../../../etc:/x",
        "./sub:/sub",  # a folder inside the repository: not the whole workspace volume
    ],
)
def test_host_paths_are_refused_and_the_repository_is_allowed(tmp_path, volume):
    (tmp_path / "repo" / ".devcontainer" / "sub").mkdir(parents=True)
    folder = _repo(tmp_path, f"    image: {BASE}\n    volumes: ['{volume}']")
    with pytest.raises(dc.PolicyError) as refused:
        _plan(folder)
    assert "services.app.volumes" in str(refused.value)

    allowed = _repo(
        tmp_path / "ok",
        f"    image: {BASE}\n    volumes: ['..:/src', 'v:/v']\n",
        "volumes: {v: {}}",
    )
    app = _plan(allowed).compose.services["app"]
    assert [v.kind for v in app.volumes] == ["bind", "volume"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("network_mode: host", "network_mode"),
        ("pid: host", "pid"),
        ("ipc: host", "ipc"),
        ("privileged: true", "privileged"),
        ("cap_add: [SYS_ADMIN]", "capAdd"),
        ("security_opt: ['seccomp:unconfined']", "securityOpt"),
        ("devices: ['/dev/mem:/dev/mem']", "devices"),
        ("volumes_from: ['other']", "volumes_from"),
        ("userns_mode: host", "userns_mode"),
        ("sysctls: {net.ipv4.ip_forward: 1}", "sysctls"),
        ("labels: {berth.workspace: '1'}", "labels"),
        ("labels: {berth.instance: other}", "labels"),
        ("labels: ['devcontainer.local_folder=/etc']", "labels"),
        ("secrets: [s]", "secrets"),
        ("volumes: [{type: volume, source: v, target: /v, volume: {nocopy: true}}]", "volumes"),
    ],
)
def test_dangerous_service_settings_are_refused_by_name(tmp_path, setting, named):
    folder = _repo(tmp_path, f"    image: {BASE}\n    {setting}", "volumes: {v: {}}")
    with pytest.raises(dc.PolicyError) as refused:
        _plan(folder)
    assert named in str(refused.value)


def test_an_approved_template_may_add_a_capability(tmp_path):
    folder = _repo(tmp_path, f"    image: {BASE}\n    cap_add: [SYS_PTRACE]")
    with pytest.raises(dc.PolicyError):
        _plan(folder)
    approvals = dc.Approvals(capabilities=frozenset({"SYS_PTRACE"}))
    assert _plan(folder, approvals).compose.services["app"].cap_add == ["SYS_PTRACE"]


@pytest.mark.parametrize(
    "declared",
    [
        "volumes: {v: {external: true}}",
        "volumes: {v: {driver: local, driver_opts: {type: none, o: bind, device: /etc}}}",
    ],
)
def test_volume_drivers_and_external_volumes_are_refused(tmp_path, declared):
    folder = _repo(tmp_path, f"    image: {BASE}\n    volumes: ['v:/v']", declared)
    with pytest.raises(dc.PolicyError, match="made by Berth"):
        _plan(folder)


def test_env_files_and_compose_files_stay_inside_the_repository(tmp_path):
    folder = _repo(tmp_path, f"    image: {BASE}\n    env_file: ../../../../../../etc/passwd")
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        _plan(folder)
    # A link inside the repository that leads out is the same.
    link = _repo(tmp_path / "l", f"    image: {BASE}\n    env_file: secrets.env")
    os.symlink("/etc/hostname", link / ".devcontainer" / "secrets.env")
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        _plan(link)
    outside = tmp_path / "elsewhere.yml"
    outside.write_text(f"services:\n  app:\n    image: {BASE}\n")
    folder = tmp_path / "r2"
    write(folder, json.dumps({"dockerComposeFile": str(outside), "service": "app"}))
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        _plan(folder)
    # A FIFO is never read (it would block the worker).
    fifo = _repo(tmp_path / "f", f"    image: {BASE}\n    env_file: pipe.env")
    os.mkfifo(fifo / ".devcontainer" / "pipe.env")
    with pytest.raises(dc.ConfigError, match="not a regular file"):
        _plan(fifo)
    # And an env file inside the repository is read.
    good = _repo(tmp_path / "g", f"    image: {BASE}\n    env_file: app.env")
    (good / ".devcontainer" / "app.env").write_text("A=1\n# no\nB='two'\n")
    assert _plan(good).compose.services["app"].environment == {"A": "1", "B": "two"}


def test_a_build_context_outside_the_repository_is_refused(tmp_path):
    folder = _repo(tmp_path, "    build: {context: ../../..}")
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        _plan(folder)


def test_the_servers_environment_is_never_interpolated(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTH_SECRET_KEY", "server-secret")
    folder = _repo(
        tmp_path,
        f"    image: {BASE}\n    environment: ['K=${{BERTH_SECRET_KEY}}', BERTH_SECRET_KEY, HOME]",
    )
    env = _plan(folder).compose.services["app"].environment
    assert env == {"K": ""}  # names alone come from the owner's variables: none here


def test_yaml_bombs_and_unknown_top_level_keys_are_refused(tmp_path):
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\n'
    folder = _repo(tmp_path, f"    image: {BASE}", "x-bomb:\n  " + bomb.replace("\n", "\n  "))
    with pytest.raises(dc.ConfigError, match="aliases are not read"):
        _plan(folder)
    folder = _repo(tmp_path / "t", f"    image: {BASE}", "configs: {c: {file: /etc/shadow}}")
    with pytest.raises(dc.ConfigError, match="top-level 'configs' is not supported"):
        _plan(folder)


def test_a_companion_is_as_hardened_as_the_workspace(tmp_path):
    folder = _repo(
        tmp_path,
        f"    image: {BASE}\n    volumes: ['..:/src']\n"
        f"  db:\n    image: {BASE}\n    volumes: ['data:/data', '..:/code', '/scratch']",
        "volumes: {data: {}}",
    )
    _, run, ws, _ = _hardened(folder)
    volume = "berth-inst-ws-7-workspace"
    (db,) = run.compose.services
    kwargs, roles = specs.companion(
        ws, db, 0, Limits(cpus=1, memory_mb=512, pids=256), network="net", workspace_volume=volume
    )
    assert kwargs["cap_drop"] == ["ALL"] and "SYS_ADMIN" not in kwargs["cap_add"]
    assert kwargs["security_opt"][0].startswith("seccomp=")
    assert kwargs["mem_limit"] == "512m" and kwargs["pids_limit"] == 256
    assert kwargs["network"] == "net" and not kwargs["privileged"]
    assert (
        kwargs["labels"]["berth.workspace"] == "7" and kwargs["labels"]["berth.role"] == "service"
    )
    sources = sorted((m["Target"], m["Source"] or "") for m in kwargs["mounts"])
    # The repository is the workspace's volume; every other volume is the workspace's own.
    assert sources[0] == ("/code", volume)
    assert all(s.startswith("berth-inst-ws-7-") for _, s in sources)
    assert all(m["Type"] == "volume" for m in kwargs["mounts"])
    assert len(roles) == 2


# --- from the attack review: resources, types, names, Berth's mount points ----------------


def test_a_few_kilobytes_cannot_make_gigabytes_in_the_worker(tmp_path):
    # .env holds 100 KB; the compose file asks for it 1,000 times.
    folder = _repo(tmp_path, f"    image: {BASE}", "name: '" + "$A" * 1000 + "'")
    (folder / ".devcontainer" / ".env").write_text("A=" + "x" * 100_000 + "\n")
    with pytest.raises(dc.ConfigError, match="more than 4 MB"):
        _plan(folder)
    # Files named twice are read once; so are env files.
    twice = tmp_path / "twice"
    write(twice, json.dumps({"dockerComposeFile": ["c.yml", "c.yml"], "service": "app"}))
    write(
        twice,
        f"services:\n  app:\n    image: {BASE}\n    env_file: [a.env, a.env, ./a.env]\n",
        name=".devcontainer/c.yml",
    )
    (twice / ".devcontainer" / "a.env").write_text("A=" + "x" * 1_000_000 + "\n")
    assert len(_plan(twice).compose.services["app"].environment["A"]) == 1_000_000
    # YAML is slow to parse: compose files are bounded on their own (a few KB in practice).
    big = _repo(tmp_path / "big", f"    image: {BASE}", "x-a: [" + ",".join(["1"] * 200_000) + "]")
    with pytest.raises(dc.ConfigError, match="at most 262144 are read"):
        _plan(big)


def test_the_number_of_services_and_the_nesting_are_bounded(tmp_path):
    many = "\n".join(f"  s{i}: {{image: {BASE}}}" for i in range(17))
    folder = _repo(tmp_path, f"    image: {BASE}\n{many}")
    with pytest.raises(dc.ConfigError, match="more than 16 services"):
        _plan(folder)
    deep = _repo(
        tmp_path / "d", f"    image: {BASE}\n    labels: {{a: " + "[" * 900 + "]" * 900 + "}"
    )
    with pytest.raises(dc.ConfigError, match="nested"):
        _plan(deep)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("cap_add: 5", "services.app.cap_add"),
        ("security_opt: true", "services.app.security_opt"),
        ("depends_on: 1", "services.app.depends_on"),
        ("volumes: 1", "services.app.volumes"),
        ("env_file: 5", "services.app.env_file"),
        ("build: 5", "services.app.build"),
        ("build: [a]", "services.app.build"),
        ("working_dir: [a]", "services.app.working_dir"),
        ("hostname: {a: 1}", "services.app.hostname"),
        ("init: 'no'", "services.app.init"),
        ("stop_signal: 9", "services.app.stop_signal"),
        ("build: {context: ., target: [a]}", "services.app.build.target"),
        ("ports: 80", "services.app.ports"),
        ("volumes: [[a]]", "services.app.volumes"),
    ],
)
def test_values_of_the_wrong_kind_are_named(tmp_path, setting, named):
    folder = _repo(tmp_path, f"    image: {BASE}\n    {setting}")
    with pytest.raises(dc.ConfigError, match=named.replace(".", r"\.")):
        _plan(folder)


@pytest.mark.parametrize(
    "document",
    ["services: [a]", "services: {app: {image: null}}", "name: 5\nservices: {}",
     "volumes: [v]\nservices: {}", "? [a]\n: 1\nservices: {}"],
)  # fmt: skip
def test_documents_of_the_wrong_shape_are_named(tmp_path, document):
    folder = tmp_path / "repo"
    write(folder, json.dumps({"dockerComposeFile": "c.yml", "service": "app"}))
    write(folder, document, name=".devcontainer/c.yml")
    with pytest.raises(dc.ConfigError):
        _plan(folder)


@pytest.mark.parametrize("name", ["''", "'x/../../y'", "'a b'", "'..'", "'-x'"])
def test_service_names_follow_composes_rule(tmp_path, name):
    folder = tmp_path / "repo"
    write(folder, json.dumps({"dockerComposeFile": "c.yml", "service": "x"}))
    write(folder, f"services:\n  {name}: {{image: {BASE}}}\n", name=".devcontainer/c.yml")
    with pytest.raises(dc.ConfigError, match="is not a service name"):
        _plan(folder)


def _hardened(folder, home="/home/dev"):
    from app.devcontainer.build import BuildResult

    result = _plan(folder)
    built = BuildResult(
        image=BASE,
        image_id="sha256:1",
        cached=True,
        label_entries=[result.config_entry],
        service_images={n: BASE for n in (result.compose.services if result.compose else {})},
    )
    ws = WorkspaceRef(id=7, name="w", owner="ann", instance="inst")
    run = dc.run_spec(result, built, workspace_volume="berth-inst-ws-7-workspace")
    limits = Limits(cpus=1, memory_mb=512, pids=256)
    return specs.container(ws, run, limits, home, network="net"), run, ws, limits


@pytest.mark.parametrize(
    "target",
    ["/opt/berth/current", "/run/berth/keepalive", "/run/berth-agent/x", "/opt", "/", "/proc",
     "/home/dev"],
)  # fmt: skip
def test_the_repository_is_never_mounted_over_berths_own(tmp_path, target):
    from app.runtime import ProvisionError

    folder = _repo(tmp_path, f"    image: {BASE}\n    volumes: ['..:{target}']")
    with pytest.raises(ProvisionError, match="Berth mounts its own|holds Berth's own|home"):
        _hardened(folder)
    # The same for an image config's workspaceFolder, and a home folder there.
    image = tmp_path / "image"
    write(image, json.dumps({"image": BASE, "workspaceFolder": target}))
    with pytest.raises(ProvisionError):
        _hardened(image)
    with pytest.raises(ProvisionError):
        _hardened(_repo(tmp_path / "h", f"    image: {BASE}"), home="/opt/berth")
    # And in another service (where /home/dev is no home of Berth's).
    if target == "/home/dev":
        return
    other = _repo(
        tmp_path / "o",
        f"    image: {BASE}\n  db:\n    image: {BASE}\n    volumes: ['..:{target}']",
    )
    (_, _), run, ws, limits = _hardened(other)
    (db,) = run.compose.services
    with pytest.raises(ProvisionError):
        specs.companion(
            ws, db, 0, limits, network="n", workspace_volume="berth-inst-ws-7-workspace"
        )


def test_the_repository_mounted_twice_is_the_workspace_volume_twice(tmp_path):
    folder = _repo(tmp_path, f"    image: {BASE}\n    volumes: ['..:/a', '..:/b']")
    (kwargs, roles), _, _, _ = _hardened(folder)
    mine = {m["Target"]: m["Source"] for m in kwargs["mounts"] if m["Target"] in ("/a", "/b")}
    assert mine == {"/a": "berth-inst-ws-7-workspace", "/b": "berth-inst-ws-7-workspace"}


def test_a_link_to_the_docker_socket_is_refused_even_where_host_paths_are_approved(tmp_path):
    folder = _repo(tmp_path, f"    image: {BASE}\n    volumes: ['./s:/var/run/docker.sock']")
    os.symlink("/var/run/docker.sock", folder / ".devcontainer" / "s")
    with pytest.raises(dc.PolicyError, match="Docker socket"):
        _plan(folder, dc.Approvals(host_mounts=True))
