"""A workspace's volumes: made for it (and only it), filled at create, and written to
or read from an archive for backups. Each is reached only through the engine."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import posixpath
import tarfile
from pathlib import Path

import docker
from docker.types import Mount

from app.runtime import ProvisionError, WorkspaceRef
from app.runtime.docker import names
from app.runtime.docker.names import LABEL_ROLE


def _made_for(volume, ws: WorkspaceRef) -> bool:
    labels = volume.attrs.get("Labels") or {}
    return all(labels.get(key) == value for key, value in names.labels(ws).items())


class Volumes:
    def __init__(self, client: docker.DockerClient):
        self.client = client

    def ensure_volume(self, ws: WorkspaceRef, role: str):
        """The workspace's volume ``role``, made by Berth for it (one with that name made
        by anything else is refused, never mounted)."""
        name = names.volume_name(ws, role)
        try:
            volume = self.client.volumes.get(name)
        except docker.errors.NotFound:
            return self.client.volumes.create(name, labels={**names.labels(ws), LABEL_ROLE: role})
        if not _made_for(volume, ws):
            raise ProvisionError(
                f"the volume {name} exists but was not made by Berth for {ws.name}"
            )
        return volume

    def discard_volume(self, ws: WorkspaceRef, role: str) -> None:
        """Remove the workspace's volume ``role``; one that is missing or was made by
        anything else is left alone."""
        try:
            volume = self.client.volumes.get(names.volume_name(ws, role))
        except docker.errors.NotFound:
            return
        if _made_for(volume, ws):
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove()

    def seed_workspace_volume(
        self, ws: WorkspaceRef, instance_id: str, uid: int, gid: int, source_dir: str | None = None
    ) -> None:
        """Give the new workspace volume to the workspace user, and fill it with a
        repository if given, before the workspace's container first starts. Through the
        engine's archive API into that created container: nothing of the workspace runs
        yet, and the engine resolves every path inside the container. The archive's top
        folder is the volume's mount point, so the volume itself and everything in it
        are the user's (an archive's "." is never applied to the folder it is unpacked
        in). The engine writes no archive beside a read-only root file system, and would
        write into any other mount inside the folder: there a throwaway container that
        may only chown, and mounts only the volume, does it."""
        volume = names.volume_name(ws, "workspace")
        attrs = self.client.api.inspect_container(instance_id)
        mounts = attrs.get("Mounts") or []
        targets = [m["Destination"] for m in mounts if m.get("Name") == volume]
        if not targets:
            raise ProvisionError(f"the container does not mount the volume {volume}")
        # The engine unpacks into the container's whole view: a mount inside the folder
        # (a config's volume or an approved host folder) would take the repository's
        # files there, as root. Only the volume, then, in a container of its own.
        nested = [
            m["Destination"]
            for m in mounts
            if m.get("Name") != volume
            and any(_inside(m["Destination"], target) for target in targets)
        ]
        if nested or (attrs.get("HostConfig") or {}).get("ReadonlyRootfs"):
            self._seed_in_a_container(ws, attrs["Image"], uid, gid, source_dir)
            return
        parent, top = posixpath.split(posixpath.normpath(targets[0]))
        archive = _archive(source_dir, top, owner=(uid, gid))
        if not self.client.api.put_archive(instance_id, parent, archive):
            raise ProvisionError(f"Docker refused to fill the volume {volume}")

    def _seed_in_a_container(self, ws, image: str, uid: int, gid: int, source_dir) -> None:
        """No network, no capability but CHOWN; the workspace container itself may have
        no root to do it."""
        seed = self.client.containers.create(
            image,
            entrypoint=["chown", "-R", f"{uid}:{gid}", "/seed"],
            user="0:0",
            mounts=[
                Mount(
                    target="/seed",
                    source=names.volume_name(ws, "workspace"),
                    type="volume",
                    no_copy=True,
                )
            ],
            network_disabled=True,
            cap_drop=["ALL"],
            cap_add=["CHOWN"],
            labels={**names.labels(ws), LABEL_ROLE: "seed"},
        )
        try:
            if source_dir:
                seed.put_archive("/", _archive(source_dir, "seed"))
            seed.start()
            outcome = seed.wait(timeout=300)
            if outcome.get("StatusCode") != 0:
                raise ProvisionError(
                    "preparing the workspace volume failed: "
                    + seed.logs().decode(errors="replace")[-300:]
                )
        finally:
            seed.remove(force=True)

    # --- volume archives ----------------------------------------------------------------

    def _volume_helper(self, ws: WorkspaceRef, volume: str, image: str, read_only: bool):
        """A container that is never started, only used to read or write a volume
        through Docker's archive API (which keeps owners, modes and links)."""
        return self.client.containers.create(
            image,
            entrypoint=["true"],
            mounts=[
                Mount(
                    target="/volume",
                    source=volume,
                    type="volume",
                    read_only=read_only,
                    no_copy=True,
                )
            ],
            network_disabled=True,
            labels={**names.labels(ws), LABEL_ROLE: "backup"},
        )

    def export_volume(self, ws: WorkspaceRef, role: str, image: str, destination: Path) -> None:
        """Write the volume's files to ``destination`` as a gzipped tar (paths volume/...)."""
        helper = self._volume_helper(ws, names.volume_name(ws, role), image, read_only=True)
        try:
            stream, _ = helper.get_archive("/volume")
            with gzip.open(destination, "wb", compresslevel=3) as out:
                for chunk in stream:
                    out.write(chunk)
        finally:
            helper.remove(force=True)

    def import_volume(self, ws: WorkspaceRef, role: str, image: str, source: Path) -> None:
        """Fill the (new) volume ``role`` of ``ws`` from an ``export_volume`` archive."""
        volume = self.ensure_volume(ws, role)
        helper = self._volume_helper(ws, volume.name, image, read_only=False)
        try:
            with source.open("rb") as data:
                if not helper.put_archive("/", data):
                    raise ProvisionError(f"Docker refused to restore {source.name}")
        finally:
            helper.remove(force=True)


def _inside(path: str, folder: str) -> bool:
    path, folder = posixpath.normpath(path), posixpath.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _archive(source_dir: str | None, top: str, owner: tuple[int, int] | None = None) -> bytes:
    """A tar of the folder ``top`` (mode 755) holding what ``source_dir`` holds; with
    ``owner``, every entry is theirs. Links stay links: tarfile never follows them."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if owner is not None:
            info.uid, info.gid, info.uname, info.gname = *owner, "", ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(top)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(owned(folder))
        for entry in sorted(os.listdir(source_dir)) if source_dir else []:
            tar.add(os.path.join(source_dir, entry), arcname=f"{top}/{entry}", filter=owned)
    return buffer.getvalue()
