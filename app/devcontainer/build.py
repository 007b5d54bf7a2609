"""``build``: turn a Plan into an image, content-addressed so unchanged inputs build nothing.

A Dockerfile config is built in two steps with the classic builder: the user's
Dockerfile (its target or last stage), then an extension on top that installs the
Features in order and carries the ``devcontainer.metadata`` label and the config's
``containerEnv``. The final tag is a hash of every input, so finding it means the build
can be skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.devcontainer import inputs, metadata
from app.devcontainer.engine import Engine
from app.devcontainer.errors import BuildError
from app.devcontainer.plan import Plan

IMAGE_REPOSITORY = "berth-devcontainer"
ENGINE_VERSION = "1"  # part of every hash: bump when the generated build changes shape
FEATURES_DIR = "/tmp/dev-container-features"  # noqa: S108  (the spec's fixed location)
Log = Callable[[str], None]


@dataclass
class BuildResult:
    image: str  # what to run: the content-addressed tag, or the config's own image
    image_id: str
    cached: bool
    label_entries: list[dict]
    container_label: str | None = None  # set when no image was built to carry the label
    image_user: str = ""
    image_entrypoint: list[str] = field(default_factory=list)
    image_cmd: list[str] = field(default_factory=list)
    image_env: dict[str, str] = field(default_factory=dict)
    # A compose config's other services: the image each runs (built or as named).
    service_images: dict[str, str] = field(default_factory=dict)

    @property
    def merged(self) -> dict:
        return metadata.merge(self.label_entries)


def _ignore_patterns(plan: Plan, context: Path | None = None) -> list[str]:
    ignore = (context or plan.build_context) / ".dockerignore"
    if not os.path.lexists(ignore):
        return []
    text = inputs.read_text(plan.config.boundary, ignore, "the build context's .dockerignore")
    return [p.strip() for p in text.splitlines() if p.strip() and not p.startswith("#")]


def _context_files(plan: Plan, engine: Engine, context: Path | None = None) -> list[str]:
    """What goes into the build context: its files less those .dockerignore excludes."""
    return engine.context_files(context or plan.build_context, _ignore_patterns(plan, context))


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE | re.MULTILINE)
_ARG = re.compile(r"^\s*ARG\s+(\w+)(?:=(\S*))?", re.IGNORECASE | re.MULTILINE)


def _from_images(dockerfile_text: str, args: dict[str, str]) -> list[str]:
    """Image references the Dockerfile starts from, with pre-FROM ARGs filled in."""
    first_from = _FROM.search(dockerfile_text)
    preamble = dockerfile_text[: first_from.start()] if first_from else ""
    values = {
        name: args.get(name, (default or "").strip("\"'"))
        for name, default in _ARG.findall(preamble)
    }
    refs = []
    for ref in _FROM.findall(dockerfile_text):
        refs.append(re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""), ref))
    return refs


def _from_ids(engine: Engine, dockerfile_text: str, args: dict[str, str]) -> list:
    """Each image the Dockerfile starts from, with the id it has now (part of a hash)."""
    return [[ref, _image_id(engine, ref)] for ref in _from_images(dockerfile_text, args)]


def _image_id(engine: Engine, ref: str) -> str:
    found = engine.image(ref)
    return found.id if found else ""  # a stage name, or an image the build will pull


def input_hash(plan: Plan, engine: Engine) -> str:
    """A hash of everything that decides the built image."""
    digest = hashlib.sha256()
    doc = {
        "engine": ENGINE_VERSION,
        "kind": plan.kind,
        "image": plan.image,
        "image_id": _image_id(engine, plan.image) if plan.image else "",
        "args": plan.build_args,
        "target": plan.target,
        "labels": plan.build_labels,
        "config_entry": plan.config_entry,
        "container_env": plan.raw.get("containerEnv") or {},
        "features": [
            {"id": f.user_id, "options": f.options, "env": f.option_env(), "digest": f.digest}
            for f in plan.features
        ],
    }
    if plan.dockerfile:
        text = plan.dockerfile_text
        doc["dockerfile"] = text
        doc["from"] = _from_ids(engine, text, plan.build_args)
    digest.update(json.dumps(doc, sort_keys=True).encode())
    if plan.build_context:
        inputs.hash_tree(digest, plan.build_context, _context_files(plan, engine))
    for feature in plan.features:
        names = []
        for folder, dirs, files in os.walk(feature.folder):  # never into linked folders
            names += [
                os.path.relpath(os.path.join(folder, n), feature.folder) for n in dirs + files
            ]
        inputs.hash_tree(digest, feature.folder, names)
    return digest.hexdigest()[:32]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _env(key: str, value: str, escape_dollar: bool, where: str) -> str:
    """``KEY="value"`` for a generated env file (sourced by sh, where a quoted value may
    span lines): a name that is not one, or a NUL, is refused."""
    if not _ENV_NAME.match(str(key)):
        raise BuildError(f"{where}: {key!r} is not an environment variable name")
    if "\0" in str(value):
        raise BuildError(f"{where}.{key}: a value may not hold a NUL character")
    return f"{key}={_env_line(str(value), escape_dollar)}"


def _env_instruction(key: str, value: str, escape_dollar: bool, where: str) -> list[str]:
    """The ``ENV`` line of a generated Dockerfile, or none for a value with a line break:
    a Dockerfile line cannot hold one, and it would end the instruction and start another.
    Such a value reaches the container from its run spec (containerEnv is set at create)."""
    line = _env(key, value, escape_dollar, where)
    return [] if any(c in str(value) for c in "\n\r") else [f"ENV {line}"]


def _env_line(value: str, escape_dollar: bool) -> str:
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    if escape_dollar:
        value = value.replace("$", "\\$")
    return f'"{value}"'


def _env_file(values: dict[str, str]) -> str:
    return "".join(_env(key, value, True, "options") + "\n" for key, value in values.items())


@dataclass(frozen=True)
class ImageUser:
    uid: int
    gid: int
    home: str


def image_users(engine: Engine, image: str) -> dict[str, ImageUser]:
    """The users in the image's /etc/passwd, read without running the image."""
    data = engine.read_image_file(image, "/etc/passwd")
    users = {}
    for line in (data or b"").decode(errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2].isdigit() and parts[3].isdigit():
            users[parts[0]] = ImageUser(int(parts[2]), int(parts[3]), parts[5])
    return users


def _stage_features(plan: Plan, root: Path, builtin_env: dict[str, str]) -> list[str]:
    """Copy each Feature into the extension context; return the Dockerfile lines installing it."""
    lines = []
    (root / "devcontainer-features.builtin.env").write_text(_env_file(builtin_env))
    lines.append(f"COPY devcontainer-features.builtin.env {FEATURES_DIR}/")
    for number, feature in enumerate(plan.features):
        name = f"{feature.id}_{number}"
        target = root / name
        # A local Feature comes from the checkout: links leading out of it are refused.
        boundary = plan.config.boundary if feature.kind == "local" else feature.folder
        inputs.copy_tree(feature.folder, target, boundary, f"the Feature {feature.user_id}")
        (target / "devcontainer-features.env").write_text(_env_file(feature.option_env()))
        (target / "devcontainer-features-install.sh").write_text(
            "#!/bin/sh\nset -e\n"
            f"echo 'Installing Feature {feature.user_id} ({number + 1}/{len(plan.features)})'\n"
            "set -a\n. ../devcontainer-features.builtin.env\n. ./devcontainer-features.env\n"
            "set +a\nchmod +x ./install.sh\n./install.sh\n"
        )
        for key, value in (feature.metadata.get("containerEnv") or {}).items():
            lines += _env_instruction(key, value, False, f"{feature.user_id} containerEnv")
        lines.append(f"COPY {name} {FEATURES_DIR}/{name}")
        lines.append(
            f"RUN cd {FEATURES_DIR}/{name} && chmod +x ./devcontainer-features-install.sh "
            "&& ./devcontainer-features-install.sh"
        )
    return lines


def build(
    plan: Plan,
    engine: Engine,
    on_log: Log = lambda line: None,
    network: str | None = None,
) -> BuildResult:
    """Build (or find) the image ``plan`` describes; stream build output to ``on_log``.
    ``network`` is the network its RUN steps are on (the engine's default if None)."""
    service_images = _service_images(plan, engine, on_log, network)
    if plan.kind == "image":
        base_ref = plan.image
        if engine.image(base_ref) is None:
            on_log(f"pulling {base_ref}")
            engine.pull(base_ref)
        if not plan.needs_build:
            return _result(engine, base_ref, True, plan, built=False, services=service_images)

    tag = f"{IMAGE_REPOSITORY}:{input_hash(plan, engine)}"
    if engine.image(tag) is not None:
        on_log(f"using cached image {tag}")
        return _result(engine, tag, True, plan, built=True, services=service_images)

    layers: list[str] = []
    options = {"network": network, "layers": layers, "log": []}  # one log for every step
    try:
        if plan.kind == "dockerfile":
            on_log(f"building {plan.dockerfile.name} in {plan.build_context}")
            base_ref = engine.build_image(
                f"building {plan.dockerfile}",
                on_log,
                context=plan.build_context,
                dockerfile_text=plan.dockerfile_text,
                exclude=_ignore_patterns(plan),
                build_args=plan.build_args or None,
                target=plan.target,
                no_cache=plan.no_cache,
                **options,
            )
        _extend(plan, engine, base_ref, tag, on_log, options)
    except Exception:  # a failed step, or the engine refusing: no layers are left behind
        engine.discard_layers(layers)
        raise
    on_log(f"built {tag}")
    return _result(engine, tag, False, plan, built=True, services=service_images)


def _service_images(plan: Plan, engine: Engine, on_log: Log, network: str | None) -> dict:
    """The image of each other service a compose config starts: pulled when missing, or
    built from its Dockerfile (inputs inside the checkout, as the config's own build),
    content-addressed like every build."""
    if plan.compose is None:
        return {}
    images = {}
    started = plan.compose.started(plan.service, plan.raw.get("runServices"))
    for name in started:
        service = plan.compose.services[name]
        if name == plan.service:
            continue
        if not service.build:
            if engine.image(service.image) is None:
                on_log(f"pulling {service.image} for the service {name}")
                engine.pull(service.image)
            images[name] = service.image
            continue
        build = service.build
        digest = hashlib.sha256()
        doc = {
            "engine": ENGINE_VERSION,
            "service": True,
            "dockerfile": build.dockerfile_text,
            "args": build.args,
            "target": build.target,
            "from": _from_ids(engine, build.dockerfile_text, build.args),
        }
        digest.update(json.dumps(doc, sort_keys=True).encode())
        inputs.hash_tree(digest, build.context, _context_files(plan, engine, build.context))
        tag = f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:32]}"
        images[name] = tag
        if engine.image(tag) is not None:
            on_log(f"using cached image {tag} for the service {name}")
            continue
        layers: list[str] = []
        on_log(f"building the service {name} from {build.dockerfile.name}")
        try:
            engine.build_image(
                f"building the service {name}",
                on_log,
                context=build.context,
                dockerfile_text=build.dockerfile_text,
                exclude=_ignore_patterns(plan, build.context),
                build_args=build.args or None,
                target=build.target,
                tag=tag,
                network=network,
                layers=layers,
                log=[],
            )
        except Exception:
            engine.discard_layers(layers)
            raise
    return images


def _image(engine: Engine, ref: str):
    found = engine.image(ref)
    if found is None:
        raise BuildError(f"the image {ref} is not on the engine (removed during the build?)")
    return found


def _extend(plan: Plan, engine: Engine, base_ref: str, tag: str, on_log: Log, options) -> None:
    base = _image(engine, base_ref)
    base_entries = metadata.read_label((base.labels or {}).get(metadata.LABEL))
    entries = metadata.compose_label(base_entries, plan.feature_entries(), plan.config_entry)
    merged = metadata.merge(entries)
    image_user = base.user
    container_user = merged.get("containerUser") or image_user or "root"
    remote_user = merged.get("remoteUser") or container_user
    users = image_users(engine, base.id) if plan.features else {}

    def home(user: str) -> str:
        return users[user].home if user in users else ("/root" if user == "root" else "")

    builtin_env = {
        "_CONTAINER_USER": container_user,
        "_REMOTE_USER": remote_user,
        "_CONTAINER_USER_HOME": home(container_user),
        "_REMOTE_USER_HOME": home(remote_user),
    }
    with tempfile.TemporaryDirectory(prefix="berth-build-") as tmp:
        root = Path(tmp)
        lines = [f"FROM {base.id}"]
        if plan.features:
            lines.append("USER root")
            lines += _stage_features(plan, root, builtin_env)
            lines.append(f"USER {image_user or 'root'}")
        for key, value in (plan.raw.get("containerEnv") or {}).items():
            lines += _env_instruction(key, value, True, "containerEnv")
        (root / "Dockerfile").write_text("\n".join(lines) + "\n")
        engine.build_image(
            "installing Features" if plan.features else "labelling the image",
            on_log,
            context=root,
            tag=tag,
            labels={metadata.LABEL: json.dumps(entries), **plan.build_labels},
            no_cache=plan.no_cache,
            **options,
        )


def _result(
    engine: Engine, ref: str, cached: bool, plan: Plan, built: bool, services: dict
) -> BuildResult:
    image = _image(engine, ref)
    image_entries = metadata.read_label((image.labels or {}).get(metadata.LABEL))
    if built:
        entries, container_label = image_entries, None
    else:
        entries = metadata.compose_label(image_entries, [], plan.config_entry)
        container_label = json.dumps(entries)
    return BuildResult(
        image=ref,
        image_id=image.id,
        cached=cached,
        label_entries=entries,
        container_label=container_label,
        image_user=image.user,
        image_entrypoint=image.entrypoint,
        image_cmd=image.cmd,
        image_env=image.env,
        service_images=services,
    )
