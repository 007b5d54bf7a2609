"""The Docker runtime's hardening spec (app.runtime.docker.spec): what a workspace's
container may do, read from the create call's arguments without an engine."""

from __future__ import annotations

import json

import pytest

from app import devcontainer as dc
from app.devcontainer.build import BuildResult
from app.runtime import Limits, ProvisionError, WorkspaceRef
from app.runtime.docker import names, spec

REF = WorkspaceRef("a1b2", 7, "ann", "web")
LIMITS = Limits(cpus=1.5, memory_mb=2048, pids=256)


def _run_spec(tmp_path, config: dict):
    folder = tmp_path / "repo"
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    plan = dc.plan(dc.load(folder), feature_cache=tmp_path / "cache")
    # As the build reports an image it did not build: the config's entry is its metadata.
    entries = [plan.config_entry]
    built = BuildResult(
        image="berth-base:bookworm", image_id="sha256:1", cached=True, label_entries=entries
    )
    return dc.run_spec(plan, built, workspace_volume=names.volume_name(REF, "workspace"))


def _container(tmp_path, config=None, **options):
    run_spec = _run_spec(tmp_path, config or {"image": "berth-base:bookworm"})
    return spec.container(REF, run_spec, LIMITS, "/home/dev", network="net-7", **options)


def test_a_person_s_workspace_drops_every_capability_but_a_few_and_keeps_sudo(tmp_path):
    kwargs, roles = _container(tmp_path)
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["cap_add"] == sorted(spec.WORKSPACE_CAPABILITIES)
    assert "SYS_ADMIN" not in kwargs["cap_add"] and "NET_RAW" not in kwargs["cap_add"]
    assert kwargs["security_opt"][0].startswith("seccomp=")
    assert "no-new-privileges" not in kwargs["security_opt"]  # people have sudo
    assert not kwargs.get("privileged")
    assert (kwargs["pids_limit"], kwargs["mem_limit"], kwargs["memswap_limit"]) == (
        256,
        "2048m",
        "2048m",
    )
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["restart_policy"] == {"Name": "unless-stopped"}
    assert kwargs["network"] == "net-7" and kwargs["name"] == "berth-a1b2-ws-7"
    assert (
        kwargs["labels"]["berth.workspace"] == "7" and kwargs["labels"]["berth.role"] == "workspace"
    )
    assert "ports" not in kwargs and "read_only" not in kwargs
    assert kwargs["tmpfs"]["/run/berth"].startswith("rw,nosuid,nodev,noexec,size=1m,mode=0700")
    assert roles == []


def test_an_agent_sandbox_is_read_only_and_cannot_gain_privileges(tmp_path):
    kwargs, _ = _container(tmp_path, agent=True, owner=(1000, 1000))
    assert kwargs["read_only"] is True
    assert "no-new-privileges" in kwargs["security_opt"]
    assert "AUDIT_WRITE" not in kwargs["cap_add"]
    assert set(kwargs["tmpfs"]) == {"/run/berth", "/tmp", "/run"}
    assert "uid=1000,gid=1000" in kwargs["tmpfs"]["/run/berth"]
    assert kwargs["hostname"] == "sandbox-7"
    assert not any(m["Target"] == "/opt/berth" for m in kwargs["mounts"])


def test_egress_control_sets_the_proxy_and_dns_to_the_gateway_only(tmp_path):
    kwargs, _ = _container(tmp_path, agent=True, egress=spec.Egress("10.9.0.1", 3128))
    assert kwargs["dns"] == ["10.9.0.1"]
    assert kwargs["environment"]["HTTPS_PROXY"] == "http://10.9.0.1:3128"
    assert kwargs["environment"]["NO_PROXY"] == "localhost,127.0.0.1"


def test_a_config_s_volumes_become_the_workspace_s_own(tmp_path):
    config = {
        "image": "berth-base:bookworm",
        "mounts": [
            "source=cache,target=/cache,type=volume",
            "source=berth-a1b2-ws-8-home,target=/steal,type=volume",  # another's, by name
            "target=/anon,type=volume",
        ],
    }
    kwargs, roles = _container(tmp_path, config)
    sources = {m["Target"]: m["Source"] for m in kwargs["mounts"] if m["Type"] == "volume"}
    for target in ("/cache", "/steal", "/anon"):
        assert sources[target].startswith("berth-a1b2-ws-7-v-"), sources
    assert len({sources["/cache"], sources["/steal"], sources["/anon"]}) == 3
    assert sorted(names.volume_name(REF, r) for r in roles) == sorted(
        sources[t] for t in ("/cache", "/steal", "/anon")
    )
    assert sources["/workspaces/repo"] == "berth-a1b2-ws-7-workspace"
    assert sources["/home/dev"] == "berth-a1b2-ws-7-home"


@pytest.mark.parametrize("target", ["/run/berth", "/run/berth/x", "/opt/berth", "/run/berth-agent"])
def test_a_config_may_not_mount_over_berth_s_own(tmp_path, target):
    config = {"image": "berth-base:bookworm", "mounts": [f"source=x,target={target},type=volume"]}
    with pytest.raises(ProvisionError, match="where Berth mounts its own"):
        _container(tmp_path, config)


def test_berth_s_own_mounts_are_read_only(tmp_path):
    kwargs, _ = _container(
        tmp_path, tools=True, keepalive_source="/data/helpers/berth-keepalive", agent_dir="/d/7"
    )
    own = {m["Target"]: m for m in kwargs["mounts"]}
    for target in ("/opt/berth", "/usr/local/bin/berth-keepalive", "/run/berth-agent"):
        assert own[target]["ReadOnly"] is True, target
