"""The local Debian base image that templates build on, made without a container registry.

``mmdebstrap`` builds a minimal Debian root file system from the host's apt sources, and
the engine imports it with the same ``PATH`` and ``CMD`` as the official ``debian`` image,
so Dockerfiles written for ``debian:bookworm`` behave the same on it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

BASE_IMAGE = "berth-base:bookworm"
SUITE = "bookworm"
_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
]


class BaseImageError(Exception):
    """The base image could not be made; the message says which step failed and why."""


def ensure_base_image(
    client: docker.DockerClient,
    name: str = BASE_IMAGE,
    on_log: Callable[[str], None] = lambda line: None,
) -> str:
    """Return the id of image ``name``, building it with mmdebstrap first if it is absent."""
    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            f"image {name} is missing and mmdebstrap is not installed: "
            "run `apt-get install mmdebstrap` (or pull debian:bookworm and tag it as " + name + ")"
        )
    with tempfile.TemporaryDirectory(prefix="berth-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        on_log(f"building {name} with mmdebstrap ({SUITE}, minbase)")
        process = subprocess.Popen(
            ["mmdebstrap", "--variant=minbase", "--quiet", SUITE, str(tarball)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tail: list[str] = []
        for line in process.stdout:
            on_log(line.rstrip())
            tail = (tail + [line.rstrip()])[-5:]
        if process.wait() != 0:
            raise BaseImageError(
                f"mmdebstrap failed with exit code {process.returncode}: " + " | ".join(tail)
            )
        repository, _, tag = name.rpartition(":")
        with tarball.open("rb") as data:
            client.api.import_image_from_data(
                data, repository=repository or name, tag=tag or "latest", changes=_CHANGES
            )
    on_log(f"imported {name}")
    return client.images.get(name).id
