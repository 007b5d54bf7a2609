"""Features: resolving them, their options, and the order they install in.

The order follows the reference implementation's round-based algorithm
(``computeDependsOnInstallationOrder``): hard ``dependsOn`` edges (recursive, with
options), soft ``installsAfter`` edges (kept only when the Feature is in the set),
``overrideFeatureInstallOrder`` as round priorities, and a stable sort inside a round.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.devcontainer import inputs, oci
from app.devcontainer.config import move_to_vscode_customizations, read_jsonc
from app.devcontainer.errors import ConfigError, FeatureError

FEATURE_FILE = "devcontainer-feature.json"


@dataclass(eq=False)
class Feature:
    """One install of a Feature: its source and the options it is installed with."""

    user_id: str  # as written by the user (the metadata label's ``id``)
    options: dict  # as written, before defaults
    kind: str  # "local" or "oci"
    folder: Path | None = None
    resource: str = ""  # local: resolved folder; oci: registry/namespace/id
    tag: str = ""
    digest: str = ""
    metadata: dict = field(default_factory=dict)
    depends_on: list[Feature] = field(default_factory=list)
    installs_after: list[Feature] = field(default_factory=list)
    round_priority: int = 0

    @property
    def id(self) -> str:
        return self.metadata.get("id") or Path(self.resource).name

    def option_env(self) -> dict[str, str]:
        """Options as the install script sees them: defaults, then the user's values."""
        values = {}
        for name, spec in (self.metadata.get("options") or {}).items():
            if isinstance(spec, dict) and "default" in spec:
                values[name] = spec["default"]
        values.update(self.options)
        return {safe_id(name): _env_value(value) for name, value in values.items()}


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def safe_id(name: str) -> str:
    """An option name as an environment variable (the reference's ``getSafeId``)."""
    return re.sub(r"^[\d_]+", "_", re.sub(r"[^\w_]", "_", name)).upper()


def _normalise_options(value, metadata: dict) -> dict:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str | bool):
        # A bare string or boolean is shorthand for the option "version", if there is one.
        return {"version": value} if "version" in (metadata.get("options") or {}) else {}
    return {}


def _compare_options(a: dict, b: dict) -> int:
    if len(a) != len(b):
        return len(a) - len(b)
    for key_a, key_b in zip(sorted(a), sorted(b), strict=True):
        if key_a != key_b:
            return _cmp(key_a, key_b)
        value_a, value_b = a[key_a], b[key_b]
        if isinstance(value_a, str) and isinstance(value_b, str) and value_a != value_b:
            return _cmp(value_a, value_b)
        if isinstance(value_a, bool) and isinstance(value_b, bool) and value_a != value_b:
            return 1 if value_a else -1
    return 0


def _cmp(a: str, b: str) -> int:
    # Close to JavaScript's localeCompare for the names Features have: case-insensitive
    # first, then case as a tie-breaker.
    key_a, key_b = (a.casefold(), a), (b.casefold(), b)
    return (key_a > key_b) - (key_a < key_b)


def compare(a: Feature, b: Feature) -> int:
    if a.kind != b.kind:
        return _cmp(a.user_id, b.user_id)
    if a.kind == "oci":
        if a.digest == b.digest and _compare_options(a.options, b.options) == 0:
            return 0
        if a.resource != b.resource:
            return _cmp(a.resource, b.resource)
        if a.tag and b.tag and a.tag != b.tag:
            return _cmp(a.tag, b.tag)
        return _compare_options(a.options, b.options) or _cmp(a.digest, b.digest)
    return _cmp(a.resource, b.resource) or _compare_options(a.options, b.options)


def _same_install(a: Feature, b: Feature) -> bool:
    return a.kind == b.kind and compare(a, b) == 0


def _satisfies(installed: Feature, wanted: Feature) -> bool:
    """Whether ``installed`` is the Feature a soft dependency names (options do not matter)."""
    return installed.kind == wanted.kind and installed.resource == wanted.resource


class Resolver:
    """Turns user Feature ids into Features, reading local folders and fetching OCI ones."""

    def __init__(
        self,
        config_folder: Path,
        workspace: Path,
        cache_dir: Path,
        fetch: Callable[[str, Path], tuple[Path, str]] = oci.fetch,
        root: Path | None = None,
    ):
        self.config_folder = config_folder
        self.cache_dir = cache_dir
        self.fetch = fetch
        self.root = Path(root or workspace).resolve()  # nothing local is read outside it
        # The spec keeps a repository's local Features in its .devcontainer folder; a
        # template's may be anywhere in the template.
        in_repo = self.root == Path(workspace).resolve()
        folder = Path(os.path.realpath(self.root / ".devcontainer"))
        self.devcontainer_folder = folder if in_repo else self.root

    def identify(self, user_id: str, options, for_soft_dependency: bool = False) -> Feature:
        if user_id.startswith(("./", "../")):
            try:
                folder = inputs.inside(
                    self.root, self.config_folder / user_id, f"the local Feature {user_id!r}"
                )
            except ConfigError as exc:
                raise FeatureError(str(exc), property=f"features.{user_id}") from None
            if not folder.is_relative_to(self.devcontainer_folder):
                raise FeatureError(
                    f"local Feature {user_id!r} must be inside {self.devcontainer_folder}",
                    property=f"features.{user_id}",
                )
            feature = Feature(user_id, {}, "local", folder, resource=str(folder))
        elif user_id.startswith(("http://", "https://")):
            raise FeatureError(
                f"Feature {user_id!r}: tarball URLs are not supported; use a local folder or an "
                "OCI reference",
                property=f"features.{user_id}",
            )
        elif user_id.startswith("/"):
            raise FeatureError(
                f"Feature {user_id!r}: absolute paths are not allowed",
                property=f"features.{user_id}",
            )
        elif "/" in user_id:
            ref = oci.parse_ref(user_id)
            feature = Feature(user_id, {}, "oci", resource=ref.resource, tag=ref.tag)
            if for_soft_dependency:
                return feature  # matched by name only; never fetched (works offline)
            feature.folder, feature.digest = self.fetch(user_id, self.cache_dir)
        else:
            raise FeatureError(
                f"Feature {user_id!r}: legacy bare Feature ids are not supported; use a local "
                "folder (./name) or an OCI reference (ghcr.io/owner/repo/name:1)",
                property=f"features.{user_id}",
            )
        if for_soft_dependency:
            return feature
        feature.metadata = self._read_metadata(feature)
        feature.options = _normalise_options(options, feature.metadata)
        return feature

    def _read_metadata(self, feature: Feature) -> dict:
        path = feature.folder / FEATURE_FILE
        if not path.is_file():
            raise FeatureError(
                f"Feature {feature.user_id!r} not found: {path} does not exist",
                property=f"features.{feature.user_id}",
            )
        if not (feature.folder / "install.sh").is_file():
            raise FeatureError(
                f"Feature {feature.user_id!r} has no install.sh in {feature.folder}",
                property=f"features.{feature.user_id}",
            )
        # A local Feature is part of the checkout; a fetched one, of Berth's cache.
        root = self.root if feature.kind == "local" else feature.folder
        try:
            metadata, _ = read_jsonc(path, FEATURE_FILE, root)
        except ConfigError as exc:
            raise FeatureError(str(exc)) from None
        move_to_vscode_customizations(metadata)
        return metadata


def resolve(
    user_features: dict, resolver: Resolver, override_order: list[str] | None = None
) -> list[Feature]:
    """Every Feature to install (user's and their dependencies), in install order."""
    worklist: list[Feature] = []
    queue = [resolver.identify(uid, options) for uid, options in user_features.items()]
    while queue:
        feature = queue.pop(0)
        if any(_same_install(existing, feature) for existing in worklist):
            continue
        for dep_id, dep_options in (feature.metadata.get("dependsOn") or {}).items():
            dependency = resolver.identify(dep_id, dep_options)
            feature.depends_on.append(dependency)
            queue.append(dependency)
        for soft_id in feature.metadata.get("installsAfter") or []:
            feature.installs_after.append(resolver.identify(soft_id, {}, for_soft_dependency=True))
        worklist.append(feature)

    count = len(override_order or [])
    for index, override_id in enumerate(override_order or []):
        wanted = resolver.identify(override_id, {}, for_soft_dependency=True)
        for feature in worklist:
            if _satisfies(feature, wanted) or (
                feature.kind == "oci"
                and wanted.kind == "oci"
                and feature.resource == wanted.resource
            ):
                feature.round_priority = max(feature.round_priority, count - index)

    for feature in worklist:
        feature.installs_after = [
            soft
            for soft in feature.installs_after
            if any(_satisfies(other, soft) for other in worklist)
        ]

    ordered: list[Feature] = []
    remaining = list(worklist)
    while remaining:
        ready = [
            f
            for f in remaining
            if all(any(_same_install(done, dep) for done in ordered) for dep in f.depends_on)
            and all(any(_satisfies(done, soft) for done in ordered) for soft in f.installs_after)
        ]
        if not ready:
            names = ", ".join(dict.fromkeys(f.user_id for f in remaining))
            raise FeatureError(
                f"circular dependency between Features: {names} (dependsOn/installsAfter form a "
                "cycle, so no install order exists)",
                property="features",
            )
        top = max(f.round_priority for f in ready)
        ready = sorted(
            (f for f in ready if f.round_priority == top), key=functools.cmp_to_key(compare)
        )
        remaining = [f for f in remaining if not any(_same_install(r, f) for r in ready)]
        ordered.extend(ready)
    return ordered
