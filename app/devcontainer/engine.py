"""What the devcontainer engine needs from a container runtime, and no more: to look at
and build images, and to run commands in a started container. app.runtime's runtimes
provide it; this package never talks to an engine itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

Log = Callable[[str], None]


class ImageFacts(Protocol):
    id: str
    labels: dict[str, str]
    user: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


class Engine(Protocol):
    def image(self, ref: str) -> ImageFacts | None:
        """The image, or None where the engine has none by that reference."""

    def pull(self, ref: str) -> None:
        """Fetch the image; raises BuildError naming it when that cannot be done."""

    def build_image(self, what: str, on_log: Log, **options) -> str:
        """Build (options as app.runtime.docker.images.Images.build); return the image
        id. Raises BuildError with the failing step and the output so far."""

    def discard_layers(self, layers: list[str]) -> None: ...

    def read_image_file(self, image: str, path: str) -> bytes | None: ...

    def context_files(self, root: Path, exclude: list[str]) -> list[str]:
        """The files of a build context that reach the build (.dockerignore applied)."""

    def run(self, instance_id: str, argv: list[str], **options) -> tuple[int, str]:
        """Run a command to its end (options: user, env, workdir, on_output for each
        line); return its exit code and output."""

    def facts(self, instance_id: str) -> dict:
        """{"env": the container's environment, "created": ..., "started_at": ...}."""
