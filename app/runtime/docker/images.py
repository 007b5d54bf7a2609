"""Images on the engine: what one holds (user, entry point, labels), classic-builder
builds with their output streamed, pulls, and removing what no workspace uses.

The devcontainer engine (app.devcontainer.build) decides what to build; this module is
how Docker builds it."""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.utils.build import exclude_paths
from docker.utils.build import tar as build_tar

from app.devcontainer.errors import BuildError
from app.runtime import ImageInfo
from app.runtime.docker.names import LABEL_MANAGED, LABEL_ROLE

# The name the Dockerfile travels under in the build context Berth sends.
CONTEXT_DOCKERFILE = ".berth-build.Dockerfile"


class Images:
    def __init__(self, client: docker.DockerClient):
        self.client = client

    def image(self, ref: str) -> ImageInfo | None:
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 400:  # a reference the engine cannot even parse
                return None
            raise
        config = image.attrs.get("Config") or {}
        return ImageInfo(
            id=image.id,
            labels=dict(image.labels or {}),
            user=config.get("User") or "",
            entrypoint=config.get("Entrypoint") or [],
            cmd=config.get("Cmd") or [],
            env=dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item),
        )

    def pull(self, ref: str) -> None:
        try:
            self.client.images.pull(ref)
        except docker.errors.APIError as exc:
            raise BuildError(
                f"image {ref!r} is not on this host and cannot be pulled: {exc.explanation or exc}",
                property="image",
            ) from None

    def context_files(self, root: Path, exclude: list[str]) -> list[str]:
        """What goes into a build context: its files less those .dockerignore excludes
        (docker-py's own matcher, which never follows a link to a folder)."""
        return sorted(exclude_paths(str(root), exclude, CONTEXT_DOCKERFILE))

    def build(
        self,
        what: str,
        on_log: Callable[[str], None],
        *,
        context: Path,
        dockerfile_text: str | None = None,
        exclude: list[str] | None = None,
        tag: str | None = None,
        labels: dict[str, str] | None = None,
        build_args: dict[str, str] | None = None,
        target: str | None = None,
        no_cache: bool = False,
        network: str | None = None,
        layers: list[str] | None = None,
        log: list[str] | None = None,
    ) -> str:
        """Build with the classic builder; return the image's id. With
        ``dockerfile_text``, the context is ``context`` as a tar made from the checkout
        (links kept as links, never followed) and that text its Dockerfile; otherwise the
        folder's own Dockerfile. Each layer made is added to ``layers`` (to discard after
        a failure), each output line to ``log``."""
        layers = [] if layers is None else layers
        log = [] if log is None else log
        kwargs: dict = {"tag": tag, "labels": labels, "nocache": no_cache}
        if network:
            kwargs["network_mode"] = network
        try:
            if dockerfile_text is not None:
                with build_tar(
                    str(context),
                    exclude=exclude or [],
                    dockerfile=(CONTEXT_DOCKERFILE, dockerfile_text),
                ) as archive:
                    return self._run(
                        what,
                        on_log,
                        layers,
                        log,
                        fileobj=archive,
                        custom_context=True,
                        dockerfile=CONTEXT_DOCKERFILE,
                        buildargs=build_args or None,
                        target=target,
                        **kwargs,
                    )
            return self._run(what, on_log, layers, log, path=str(context), **kwargs)
        except docker.errors.APIError as exc:
            raise BuildError(
                f"the Docker engine refused the build: {exc.explanation or exc}", log=log
            ) from None

    def _run(self, what: str, on_log, layers: list[str], log: list[str], **kwargs) -> str:
        step = ""
        image_id = ""
        error = None
        stream = self.client.api.build(decode=True, rm=True, forcerm=True, **kwargs)
        for chunk in stream:
            for line in (chunk.get("stream") or "").splitlines():
                log.append(line)
                on_log(line)
                if line.startswith("Step "):
                    step = line
                match = re.match(r"^ ---> ([0-9a-f]{12})$", line)
                if match:
                    layers.append(match.group(1))
                built = re.match(r"^Successfully built ([0-9a-f]{12})", line)
                if built:
                    image_id = built.group(1)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                error = chunk["error"].strip()
                log.append(error)
                on_log(error)
        if error or not image_id:
            where = f" at {step}" if step else ""
            raise BuildError(f"{what} failed{where}: {error or 'no image was produced'}", log=log)
        return self.client.images.get(image_id).id

    def discard_layers(self, layers: list[str]) -> None:
        """Remove the untagged layers a failed build left; shared cache layers stay."""
        for layer in reversed(layers):
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(layer, noprune=False)

    def read_image_file(self, image: str, path: str) -> bytes | None:
        """A file of the image, read without running it (None if it has none)."""
        container = self.client.containers.create(
            image,
            command=["true"],
            entrypoint=[],
            labels={LABEL_MANAGED: "true", LABEL_ROLE: "probe"},
        )
        try:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.extractfile(tar.getmembers()[0])
                return member.read() if member else None
        except docker.errors.NotFound:
            return None
        finally:
            container.remove(force=True)

    def remove_if_unused(self, image: str, protected: set[str]) -> bool:
        """Remove a built workspace image that no container and no live workspace uses."""
        if not image or not image.startswith("berth-devcontainer:") or image in protected:
            return False
        if self.client.containers.list(all=True, filters={"ancestor": image}):
            return False
        try:
            self.client.images.remove(image)
        except docker.errors.APIError:
            return False
        return True
