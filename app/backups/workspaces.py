"""Workspace volume backups: one folder per backup with ``manifest.json`` and one
``<role>.tar.gz`` per volume, written under a temporary name and renamed when complete.
A backup restores into a new workspace (its volumes are filled before the container is
created)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from app.backups import Backup, BackupError, parse_timestamp, size_of, timestamp
from app.config import Settings
from app.runtime import Runtime, WorkspaceRef

ID_RULE = re.compile(r"^[a-z0-9-]+-\d{8}T\d{6}Z$")
MANIFEST = "manifest.json"


def folder(settings: Settings) -> Path:
    return settings.backups / "workspaces"


def backup(
    settings: Settings, runtime: Runtime, ref: WorkspaceRef, image: str, about: dict
) -> Backup:
    """Archive every volume of the workspace ``ref``; ``about`` describes it (template,
    parameters, ...) for whoever restores it."""
    backup_id = f"{ref.owner}-{ref.name}-{timestamp()}"
    final = folder(settings) / backup_id
    partial = final.with_name(backup_id + ".partial")
    partial.mkdir(parents=True)
    try:
        roles = sorted(v.role for v in runtime.volumes(ref.id) if v.role)
        if not roles:
            raise BackupError(f"workspace {ref.name} has no volumes to back up")
        for role in roles:
            runtime.export_volume(ref, role, image, partial / f"{role}.tar.gz")
        manifest = {**about, "owner": ref.owner, "name": ref.name, "volumes": roles}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return _describe(final)


def _describe(path: Path) -> Backup:
    manifest = json.loads((path / MANIFEST).read_text())
    return Backup("workspace", path.name, path, parse_timestamp(path.name), size_of(path), manifest)


def list_backups(settings: Settings, owner: str | None = None) -> list[Backup]:
    """Complete workspace backups, newest first; only ``owner``'s when given."""
    found = []
    for path in folder(settings).glob("*"):
        if ID_RULE.match(path.name) and (path / MANIFEST).is_file():
            described = _describe(path)
            if owner is None or described.meta.get("owner") == owner:
                found.append(described)
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def find(settings: Settings, backup_id: str) -> Backup:
    path = folder(settings) / str(backup_id)
    if not ID_RULE.match(str(backup_id)) or not (path / MANIFEST).is_file():
        raise BackupError(f"there is no workspace backup {backup_id!r}")
    return _describe(path)


def restore(runtime: Runtime, ref: WorkspaceRef, image: str, source: Backup) -> list[str]:
    """Fill the volumes of the new workspace ``ref`` from ``source``; returns the roles."""
    for role in source.meta["volumes"]:
        runtime.import_volume(ref, role, image, source.path / f"{role}.tar.gz")
    return source.meta["volumes"]


def delete(source: Backup) -> None:
    shutil.rmtree(source.path)
