"""A workspace's volumes: made for it (and only it), filled at create, and written to
or read from an archive for backups. Each is reached only through the engine."""

from __future__ import annotations

import contextlib
import gzip
import io
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
        self, ws: WorkspaceRef, image: str, uid: int, gid: int, source_dir: str | None = None
    ) -> None:
        """Fill a new workspace volume (with a repository, if given) and give it to the
        workspace user, in a throwaway container that may only chown: no network, no
        other capability. The workspace container itself may have no root to do it."""
        volume = self.ensure_volume(ws, "workspace")
        seed = self.client.containers.create(
            image,
            entrypoint=["chown", "-R", f"{uid}:{gid}", "/seed"],
            user="0:0",
            mounts=[Mount(target="/seed", source=volume.name, type="volume", no_copy=True)],
            network_disabled=True,
            cap_drop=["ALL"],
            cap_add=["CHOWN"],
            labels={**names.labels(ws), LABEL_ROLE: "seed"},
        )
        try:
            if source_dir:
                buffer = io.BytesIO()
                with tarfile.open(fileobj=buffer, mode="w") as tar:
                    tar.add(source_dir, arcname=".")
                seed.put_archive("/seed", buffer.getvalue())
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
