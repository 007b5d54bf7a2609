"""The local Debian base image that templates build on, made on first use: pulled as
``debian:bookworm-slim`` where a registry answers, else made without one.

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

from app.messages import first_line
from app.runtime import ProvisionError
from app.runtime.layout import BASE_IMAGE

UPSTREAM = ("debian", "bookworm-slim")  # what the base image is where a registry answers
SUITE = "bookworm"
_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
]


class BaseImageError(ProvisionError):
    """The base image could not be made; the message says which step failed and why."""


def ensure_base_image(
    client: docker.DockerClient,
    name: str = BASE_IMAGE,
    on_log: Callable[[str], None] = lambda line: None,
) -> str:
    """Return the id of image ``name``, pulling or building it first if it is absent."""
    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = name.rpartition(":")
    try:
        on_log(f"pulling {UPSTREAM[0]}:{UPSTREAM[1]} for {name}")
        client.images.pull(UPSTREAM[0], tag=UPSTREAM[1]).tag(repository or name, tag or "latest")
        on_log(f"{name} is {UPSTREAM[0]}:{UPSTREAM[1]}")
        return client.images.get(name).id
    except docker.errors.APIError as exc:
        on_log(f"no registry answers ({first_line(exc, 120)}); making {name} with mmdebstrap")
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError(
            f"image {name} is missing, no registry answers and mmdebstrap is not installed: "
            "run `apt-get install mmdebstrap` (Berth then makes it by itself), or pull "
            f"debian:bookworm-slim and tag it as {name}"
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
        with tarball.open("rb") as data:
            client.api.import_image_from_data(
                data, repository=repository or name, tag=tag or "latest", changes=_CHANGES
            )
    on_log(f"imported {name}")
    return client.images.get(name).id
