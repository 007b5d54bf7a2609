"""The devcontainer engine's rules, without Docker: parsing, substitution, Feature order,
metadata merging, lifecycle order and the security policy."""

import json
from pathlib import Path

import pytest

from app import devcontainer as dc
from app.devcontainer import features, metadata, policy, variables
from app.devcontainer.plan import plan
from tests.dcfiles import feature, write
from tests.reference import CORPUS

CONFIGS = CORPUS / "configs"


# --- parsing ------------------------------------------------------------------------


def test_jsonc_comments_and_trailing_commas(tmp_path):
    write(
        tmp_path, '// lead\n{\n  /* block */ "image": "x", // after\n  "forwardPorts": [1,],\n}\n'
    )
    config = dc.load(tmp_path)
    assert config.raw == {"image": "x", "forwardPorts": [1]}
    assert config.kind == "image"


def test_discovery_order(tmp_path):
    write(tmp_path, '{"image": "c"}', ".devcontainer/python/devcontainer.json")
    assert dc.load(tmp_path).raw["image"] == "c"
    write(tmp_path, '{"image": "b"}', ".devcontainer.json")
    assert dc.load(tmp_path).raw["image"] == "b"
    write(tmp_path, '{"image": "a"}')
    assert dc.load(tmp_path).raw["image"] == "a"
    assert dc.load(tmp_path, ".devcontainer/python/devcontainer.json").raw["image"] == "c"
    assert [str(p.relative_to(tmp_path)) for p in dc.discover(tmp_path)] == [
        ".devcontainer/devcontainer.json",
        ".devcontainer.json",
        ".devcontainer/python/devcontainer.json",
    ]
    with pytest.raises(dc.ConfigError, match="must be named devcontainer.json"):
        dc.load(tmp_path, "other.json")


def test_errors_name_file_property_and_line(tmp_path):
    path = write(tmp_path, '{\n  "image": "x",\n  "forwardPorts": "3000"\n}\n')
    with pytest.raises(dc.ConfigError) as error:
        dc.load(tmp_path)
    assert str(error.value) == f"{path}:3: forwardPorts: must be array, not string"

    write(tmp_path, '{\n  "image": "x"\n  "init": true\n}')
    with pytest.raises(dc.ConfigError, match=r"devcontainer.json:3: invalid JSON"):
        dc.load(tmp_path)

    write(tmp_path, '["not", "an", "object"]')
    with pytest.raises(dc.ConfigError, match="top level must be an object"):
        dc.load(tmp_path)

    write(tmp_path, '{"name": "nothing to run"}')
    with pytest.raises(dc.ConfigError, match="needs one of 'image', 'build.dockerfile'"):
        dc.load(tmp_path)

    write(tmp_path, '{"image": "x", "userEnvProbe": "always"}')
    with pytest.raises(dc.ConfigError, match="userEnvProbe: 'always' is not one of"):
        dc.load(tmp_path)

    write(tmp_path, '{"image": "x", "postCreateCommand": {"a": 1}}')
    with pytest.raises(dc.ConfigError, match="postCreateCommand: the parallel command 'a'"):
        dc.load(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(dc.ConfigError, match="no devcontainer.json in"):
        dc.load(empty)


def test_unknown_properties_warn(tmp_path):
    write(tmp_path, '{"image": "x",\n "imagee": "typo"}')
    config = dc.load(tmp_path)
    assert config.warnings == [f"{config.path}:2: unknown property 'imagee' is ignored"]


def test_legacy_properties_move(tmp_path):
    write(
        tmp_path,
        '{"dockerFile": "Dockerfile", "context": "..", "extensions": ["a"],'
        ' "settings": {"x": 1}, "customizations": {"vscode": {"extensions": ["b"]}}}',
    )
    config = dc.load(tmp_path)
    assert config.raw["build"] == {"dockerfile": "Dockerfile", "context": ".."}
    assert config.raw["customizations"]["vscode"] == {
        "extensions": ["b", "a"],
        "settings": {"x": 1},
    }


def test_missing_dockerfile_is_named(tmp_path):
    path = write(tmp_path, '{\n "build": {\n  "dockerfile": "Nope"\n }\n}')
    with pytest.raises(dc.ConfigError) as error:
        plan(dc.load(tmp_path))
    assert f"{path}:3: build.dockerfile: the Dockerfile" in str(error.value)
    assert "Nope does not exist" in str(error.value)


# --- substitution -------------------------------------------------------------------


def test_variables():
    ctx = variables.Context(
        local_workspace="/src/proj",
        container_workspace="/work/proj/sub",
        local_env={"SET": "hello"},
        devcontainer_id="id52",
    )
    assert variables.substitute(
        {
            "a": "${localEnv:SET}",
            "b": "${env:SET}",
            "c": "${localEnv:UNSET:dflt}",
            "d": "${localEnv:UNSET:a:b}",
            "e": "x${localEnv:UNSET}x",
            "f": "${unknown}",
            "g": ["${localWorkspaceFolderBasename}", "${containerWorkspaceFolderBasename}"],
            "h": "${devcontainerId}",
            "i": "${containerEnv:PATH}",
            "${localEnv:SET}": "keys stay",
        },
        ctx,
    ) == {
        "a": "hello",
        "b": "hello",
        "c": "dflt",
        "d": "a",
        "e": "xx",
        "f": "${unknown}",
        "g": ["proj", "sub"],
        "h": "id52",
        "i": "${containerEnv:PATH}",
        "${localEnv:SET}": "keys stay",
    }
    later = ctx.with_container_env({"PATH": "/bin"})
    assert variables.substitute("${containerEnv:PATH}:${containerEnv:NO:d}", later) == "/bin:d"
    with pytest.raises(dc.ConfigError, match="needs a variable name"):
        variables.substitute("${localEnv}", ctx)


def test_local_env_never_reads_the_server_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTH_SECRET_KEY", "server-secret")
    write(tmp_path, '{"image": "x", "containerEnv": {"S": "${localEnv:BERTH_SECRET_KEY}"}}')
    assert plan(dc.load(tmp_path)).raw["containerEnv"]["S"] == ""


def test_devcontainer_id_shape():
    value = variables.devcontainer_id(
        {"devcontainer.local_folder": "/a", "devcontainer.config_file": "/a/.devcontainer.json"}
    )
    assert len(value) == 52 and set(value) <= set("0123456789abcdefghijklmnopqrstuv")


# --- Features -----------------------------------------------------------------------


def _order(name: str) -> list[tuple[str, dict]]:
    config = dc.load(CONFIGS / name)
    return [(f.user_id, f.options) for f in plan(config).features]


def test_feature_order_matches_the_reference_cases():
    assert _order("order-dependsOn-local-with-options") == [
        ("./b", {}),
        ("./b", {"optA": "a", "optB": "a"}),
        ("./b", {"optA": "a", "optB": "b"}),
        ("./b", {"optA": "b", "optB": "a"}),
        ("./b", {"optA": "b", "optB": "b"}),
        ("./d", {}),
        ("./e", {}),
        ("./c", {}),
        ("./a", {"optA": "a", "optB": "b"}),
    ]
    assert [i for i, _ in _order("order-override-local-simple")] == ["./c", "./b", "./d", "./a"]
    assert [i for i, _ in _order("order-override-local-intermediate")] == [
        "./c",
        "./d",
        "./b",
        "./a",
    ]
    assert [i for i, _ in _order("order-override-local-roundPriority")] == ["./a", "./b", "./c"]
    assert _order("order-installsAfter-local-simple") == [
        ("./c", {"magicNumber": "321"}),
        ("./a", {}),
    ]
    assert _order("order-dependsOn-local-simple") == [("./b", {"magicNumber": "50"}), ("./a", {})]


@pytest.mark.parametrize(
    "name", ["order-dependsOn-invalid-circular", "order-installsAfter-invalid-circular"]
)
def test_cycles_are_reported(name):
    with pytest.raises(dc.FeatureError, match="circular dependency between Features: ./a"):
        plan(dc.load(CONFIGS / name))


def test_option_env_names_and_defaults(tmp_path):
    feature(
        tmp_path,
        "f",
        options={
            "version": {"type": "string", "default": "latest"},
            "enableThing": {"type": "boolean", "default": False},
            "my-option.name": {"type": "string", "default": "x"},
            "2fast": {"type": "string", "default": "d"},
        },
    )
    write(tmp_path, '{"image": "x", "features": {"./f": "1.2.3"}}')
    (only,) = plan(dc.load(tmp_path)).features
    assert only.option_env() == {
        "VERSION": "1.2.3",
        "ENABLETHING": "false",
        "MY_OPTION_NAME": "x",
        "_FAST": "d",
    }


def test_missing_and_unsupported_features_are_named(tmp_path):
    write(tmp_path, '{"image": "x", "features": {"./nope": {}}}')
    with pytest.raises(dc.FeatureError, match="Feature './nope' not found"):
        plan(dc.load(tmp_path))
    write(tmp_path, '{"image": "x", "features": {"myfeature": {}}}')
    with pytest.raises(dc.FeatureError, match="legacy bare Feature ids are not supported"):
        plan(dc.load(tmp_path))
    write(tmp_path, '{"image": "x", "features": {"../../outside": {}}}')
    with pytest.raises(dc.FeatureError, match="leads outside the repository"):
        plan(dc.load(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path, '{"image": "x", "features": {"../elsewhere": {}}}')
    with pytest.raises(dc.FeatureError, match="must be inside"):
        plan(dc.load(tmp_path))


def test_oci_feature_unreachable_is_named(tmp_path):
    write(tmp_path, '{"image": "x", "features": {"registry.invalid/owner/features/tool:1": {}}}')
    with pytest.raises(dc.FeatureError) as error:
        plan(dc.load(tmp_path), feature_cache=tmp_path / "cache")
    assert "Feature 'registry.invalid/owner/features/tool:1' cannot be fetched" in str(error.value)
    assert "unreachable" in str(error.value)


def test_oci_features_use_the_fetcher_and_order_by_name(tmp_path):
    fetched = []

    def fake_fetch(user_id, cache):
        fetched.append(user_id)
        folder = tmp_path / "oci" / user_id.rsplit("/", 1)[1].split(":")[0]
        folder.mkdir(parents=True)
        (folder / "devcontainer-feature.json").write_text(
            json.dumps({"id": folder.name, "version": "1", "installsAfter": ["ghcr.io/x/y/zz"]})
        )
        (folder / "install.sh").write_text("true\n")
        return folder, "sha256:" + folder.name

    write(tmp_path, '{"image": "x", "features": {"ghcr.io/o/f/b:1": {}, "ghcr.io/o/f/a:1": {}}}')
    result = plan(dc.load(tmp_path), fetch=fake_fetch)
    assert [f.user_id for f in result.features] == ["ghcr.io/o/f/a:1", "ghcr.io/o/f/b:1"]
    # A soft dependency that is not in the set is never fetched (works offline).
    assert sorted(fetched) == ["ghcr.io/o/f/a:1", "ghcr.io/o/f/b:1"]


# --- metadata -----------------------------------------------------------------------


def test_metadata_merge():
    merged = metadata.merge(
        [
            {
                "id": "base",
                "capAdd": ["A"],
                "init": True,
                "remoteUser": "u1",
                "mounts": ["type=volume,source=a,target=/x"],
                "forwardPorts": [80],
                "hostRequirements": {"memory": "512mb"},
                "postCreateCommand": "one",
                "containerEnv": {"K": "1"},
                "customizations": {"vscode": {"extensions": ["e1"]}},
            },
            {
                "id": "feat",
                "capAdd": ["A", "B"],
                "entrypoint": "/e.sh",
                "mounts": [{"type": "volume", "source": "b", "target": "/x"}],
                "postCreateCommand": ["two"],
                "customizations": {"vscode": {"extensions": ["e2"], "settings": {"s": 1}}},
            },
            {
                "remoteUser": "u2",
                "forwardPorts": ["localhost:80", 3000, "db:5432"],
                "hostRequirements": {"memory": "1gb", "cpus": 2},
                "containerEnv": {"K": "2"},
                "overrideCommand": False,
                "postCreateCommand": {"p": "three"},
            },
        ]
    )
    assert merged["init"] is True and merged["privileged"] is False
    assert merged["capAdd"] == ["A", "B"] and merged["entrypoints"] == ["/e.sh"]
    assert merged["mounts"] == [{"type": "volume", "source": "b", "target": "/x"}]
    assert merged["remoteUser"] == "u2" and merged["containerEnv"] == {"K": "2"}
    assert merged["forwardPorts"] == [80, 3000, "db:5432"]
    assert merged["hostRequirements"] == {"cpus": 2, "memory": str(1024**3)}
    assert merged["overrideCommand"] is False
    assert [h["origin"] for h in merged["postCreateCommands"]] == [
        "base",
        "feat",
        "devcontainer.json",
    ]
    assert metadata.vscode_customizations(merged) == {
        "extensions": ["e1", "e2"],
        "settings": {"s": 1},
    }


def test_lifecycle_order_features_first(tmp_path):
    config = dc.load(CONFIGS / "feat-lifecycle-hooks-inline-commands")
    result = plan(config)
    entries = metadata.compose_label([], result.feature_entries(), result.config_entry)
    origins = [h["origin"] for h in metadata.merge(entries)["onCreateCommands"]]
    assert origins == ["./panda", "./tiger", "devcontainer.json"]


# --- policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "prop"),
    [
        ({"privileged": True}, "privileged"),
        ({"capAdd": ["SYS_ADMIN"]}, "capAdd"),
        ({"securityOpt": ["seccomp=unconfined"]}, "securityOpt"),
        ({"mounts": ["type=bind,source=/etc,target=/host-etc"]}, "mounts"),
        (
            {"mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind"]},
            "mounts",
        ),
        ({"runArgs": ["--network", "host"]}, "runArgs --network"),
        ({"runArgs": ["--pid=host"]}, "runArgs --pid"),
        ({"runArgs": ["--device", "/dev/kvm"]}, "runArgs --device"),
        ({"runArgs": ["-v", "/:/host"]}, "runArgs --volume"),
        ({"runArgs": ["--privileged"]}, "privileged"),
        ({"runArgs": ["-p", "8080:8080"]}, "runArgs --publish"),
    ],
)
def test_policy_refuses_unsafe_settings(tmp_path, config, prop):
    write(tmp_path, json.dumps({"image": "x", **config}))
    with pytest.raises(dc.PolicyError) as error:
        plan(dc.load(tmp_path))
    assert error.value.property == prop
    assert f"{prop}: " in str(error.value)


def test_policy_allows_what_an_admin_approved(tmp_path):
    write(
        tmp_path,
        json.dumps(
            {
                "image": "x",
                "capAdd": ["SYS_PTRACE"],
                "securityOpt": ["no-new-privileges"],
                "mounts": ["type=volume,source=cache,target=/cache"],
                "runArgs": ["--hostname", "h", "-e", "A=1"],
            }
        ),
    )
    with pytest.raises(dc.PolicyError, match="SYS_PTRACE"):
        plan(dc.load(tmp_path))
    approved = policy.Approvals(capabilities=frozenset({"SYS_PTRACE"}))
    assert plan(dc.load(tmp_path), approvals=approved).raw["capAdd"] == ["SYS_PTRACE"]


def test_unknown_run_args_are_refused_by_name(tmp_path):
    write(tmp_path, json.dumps({"image": "x", "runArgs": ["--gpus", "all"]}))
    with pytest.raises(dc.ConfigError, match="'--gpus' is not a supported docker run flag"):
        plan(dc.load(tmp_path))


def test_initialize_command_is_reported_not_run(tmp_path):
    write(tmp_path, '{"image": "x", "initializeCommand": "touch /tmp/pwned"}')
    result = plan(dc.load(tmp_path))
    assert any("initializeCommand is not run" in w for w in result.warnings)
    assert not Path("/tmp/pwned").exists()  # noqa: S108


def test_feature_safe_id():
    assert features.safe_id("magicNumber") == "MAGICNUMBER"
    assert features.safe_id("my-option.name") == "MY_OPTION_NAME"
    assert features.safe_id("2fast") == "_FAST"


def test_a_chosen_config_that_links_outside_the_repository_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".devcontainer" / "evil").mkdir(parents=True)
    secret = tmp_path / "host-file.json"
    secret.write_text('{"image": "x"}')
    (repo / ".devcontainer" / "evil" / "devcontainer.json").symlink_to(secret)
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        dc.load(repo, ".devcontainer/evil/devcontainer.json", root=repo)
    # Discovered rather than chosen, it is refused the same way.
    with pytest.raises(dc.ConfigError, match="leads outside the repository"):
        dc.load(repo, dc.discover(repo)[0], root=repo)
