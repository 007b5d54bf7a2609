"""``build``: turn a Plan into an image, content-addressed so unchanged inputs build nothing.

A Dockerfile config is built in two steps with the classic builder: the user's
Dockerfile (its target or last stage), then an extension on top that installs the
Features in order and carries the ``devcontainer.metadata`` label and the config's
``containerEnv``. The final tag is a hash of every input, so finding it means the build
can be skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.utils.build import exclude_paths
from docker.utils.build import tar as build_tar

from app.devcontainer import inputs, metadata
from app.devcontainer.errors import BuildError
from app.devcontainer.plan import Plan

IMAGE_REPOSITORY = "berth-devcontainer"
ENGINE_VERSION = "1"  # part of every hash: bump when the generated build changes shape
FEATURES_DIR = "/tmp/dev-container-features"  # noqa: S108  (the spec's fixed location)
# The name the Dockerfile travels under in the build context Berth sends.
CONTEXT_DOCKERFILE = ".berth-build.Dockerfile"
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

    @property
    def merged(self) -> dict:
        return metadata.merge(self.label_entries)


def _ignore_patterns(plan: Plan) -> list[str]:
    ignore = plan.build_context / ".dockerignore"
    if not os.path.lexists(ignore):
        return []
    text = inputs.read_text(plan.config.boundary, ignore, "the build context's .dockerignore")
    return [p.strip() for p in text.splitlines() if p.strip() and not p.startswith("#")]


def _context_files(plan: Plan) -> list[str]:
    """What goes into the build context: its files less those .dockerignore excludes
    (docker-py's own matcher, which never follows a link to a folder)."""
    return sorted(
        exclude_paths(str(plan.build_context), _ignore_patterns(plan), CONTEXT_DOCKERFILE)
    )


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


def _image_id(client: docker.DockerClient, ref: str) -> str:
    try:
        return client.images.get(ref).id
    except (docker.errors.ImageNotFound, docker.errors.APIError):
        return ""  # a stage name, or an image the build will pull


def input_hash(plan: Plan, client: docker.DockerClient) -> str:
    """A hash of everything that decides the built image."""
    digest = hashlib.sha256()
    doc = {
        "engine": ENGINE_VERSION,
        "kind": plan.kind,
        "image": plan.image,
        "image_id": _image_id(client, plan.image) if plan.image else "",
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
        doc["from"] = [[ref, _image_id(client, ref)] for ref in _from_images(text, plan.build_args)]
    digest.update(json.dumps(doc, sort_keys=True).encode())
    if plan.build_context:
        inputs.hash_tree(digest, plan.build_context, _context_files(plan))
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


def image_users(client: docker.DockerClient, image: str) -> dict[str, ImageUser]:
    """The users in the image's /etc/passwd, read without running the image."""
    container = client.containers.create(
        image,
        command=["true"],
        entrypoint=[],
        labels={"berth.managed": "true", "berth.role": "probe"},
    )
    try:
        stream, _ = container.get_archive("/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            text = tar.extractfile(tar.getmembers()[0]).read().decode(errors="replace")
    except docker.errors.NotFound:
        return {}
    finally:
        container.remove(force=True)
    users = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2].isdigit() and parts[3].isdigit():
            users[parts[0]] = ImageUser(int(parts[2]), int(parts[3]), parts[5])
    return users


def _context_archive(plan: Plan):
    """The build context as a tar made from the checkout: links kept as links (never
    followed), the Dockerfile as read from inside the checkout under a name of its own."""
    return build_tar(
        str(plan.build_context),
        exclude=_ignore_patterns(plan),
        dockerfile=(CONTEXT_DOCKERFILE, plan.dockerfile_text),
    )


class _Builder:
    """Runs one classic-builder build, streaming its output and remembering its layers."""

    def __init__(self, client: docker.DockerClient, on_log: Log, network: str | None = None):
        self.client = client
        self.on_log = on_log
        self.network = network
        self.log: list[str] = []
        self.layers: list[str] = []

    def run(self, what: str, **kwargs) -> str:
        step = ""
        image_id = ""
        error = None
        if self.network:
            kwargs["network_mode"] = self.network
        stream = self.client.api.build(decode=True, rm=True, forcerm=True, **kwargs)
        for chunk in stream:
            for line in (chunk.get("stream") or "").splitlines():
                self.log.append(line)
                self.on_log(line)
                if line.startswith("Step "):
                    step = line
                match = re.match(r"^ ---> ([0-9a-f]{12})$", line)
                if match:
                    self.layers.append(match.group(1))
                built = re.match(r"^Successfully built ([0-9a-f]{12})", line)
                if built:
                    image_id = built.group(1)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                error = chunk["error"].strip()
                self.log.append(error)
                self.on_log(error)
        if error or not image_id:
            where = f" at {step}" if step else ""
            raise BuildError(
                f"{what} failed{where}: {error or 'no image was produced'}", log=self.log
            )
        return self.client.images.get(image_id).id

    def discard_layers(self) -> None:
        """Remove the untagged layers a failed build left; shared cache layers stay."""
        for layer in reversed(self.layers):
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(layer, noprune=False)


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
    client: docker.DockerClient,
    on_log: Log = lambda line: None,
    network: str | None = None,
) -> BuildResult:
    """Build (or find) the image ``plan`` describes; stream build output to ``on_log``.
    ``network`` is the network its RUN steps are on (Docker's default bridge if None)."""
    if plan.kind == "image":
        base_ref = plan.image
        try:
            client.images.get(base_ref)
        except docker.errors.ImageNotFound:
            on_log(f"pulling {base_ref}")
            try:
                client.images.pull(base_ref)
            except docker.errors.APIError as exc:
                raise BuildError(
                    f"image {base_ref!r} is not on this host and cannot be pulled: "
                    f"{exc.explanation or exc}",
                    property="image",
                ) from None
        if not plan.needs_build:
            return _result(client, base_ref, cached=True, plan=plan, built=False)

    tag = f"{IMAGE_REPOSITORY}:{input_hash(plan, client)}"
    try:
        client.images.get(tag)
        on_log(f"using cached image {tag}")
        return _result(client, tag, cached=True, plan=plan, built=True)
    except docker.errors.ImageNotFound:
        pass

    builder = _Builder(client, on_log, network)
    try:
        if plan.kind == "dockerfile":
            on_log(f"building {plan.dockerfile.name} in {plan.build_context}")
            with _context_archive(plan) as context:
                base_ref = builder.run(
                    f"building {plan.dockerfile}",
                    fileobj=context,
                    custom_context=True,
                    dockerfile=CONTEXT_DOCKERFILE,
                    buildargs=plan.build_args or None,
                    target=plan.target,
                    nocache=plan.no_cache,
                )
        _extend(plan, client, builder, base_ref, tag)
    except BuildError:
        builder.discard_layers()
        raise
    except docker.errors.APIError as exc:
        builder.discard_layers()
        raise BuildError(
            f"the Docker engine refused the build: {exc.explanation or exc}", log=builder.log
        ) from None
    on_log(f"built {tag}")
    return _result(client, tag, cached=False, plan=plan, built=True)


def _extend(plan: Plan, client, builder: _Builder, base_ref: str, tag: str) -> None:
    base = client.images.get(base_ref)
    base_entries = metadata.read_label((base.labels or {}).get(metadata.LABEL))
    entries = metadata.compose_label(base_entries, plan.feature_entries(), plan.config_entry)
    merged = metadata.merge(entries)
    image_user = base.attrs["Config"].get("User") or ""
    container_user = merged.get("containerUser") or image_user or "root"
    remote_user = merged.get("remoteUser") or container_user
    users = image_users(client, base.id) if plan.features else {}

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
        builder.run(
            "installing Features" if plan.features else "labelling the image",
            path=str(root),
            tag=tag,
            labels={metadata.LABEL: json.dumps(entries), **plan.build_labels},
            nocache=plan.no_cache,
        )


def _result(client, ref: str, cached: bool, plan: Plan, built: bool) -> BuildResult:
    image = client.images.get(ref)
    config = image.attrs["Config"]
    image_entries = metadata.read_label((image.labels or {}).get(metadata.LABEL))
    if built:
        entries, container_label = image_entries, None
    else:
        entries = metadata.compose_label(image_entries, [], plan.config_entry)
        container_label = json.dumps(entries)
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return BuildResult(
        image=ref,
        image_id=image.id,
        cached=cached,
        label_entries=entries,
        container_label=container_label,
        image_user=config.get("User") or "",
        image_entrypoint=config.get("Entrypoint") or [],
        image_cmd=config.get("Cmd") or [],
        image_env=env,
    )
