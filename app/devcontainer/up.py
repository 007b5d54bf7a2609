"""Create and start a container from a RunSpec, then run its lifecycle commands."""

from __future__ import annotations

from collections.abc import Callable

import docker

from app.devcontainer.lifecycle import run_lifecycle
from app.devcontainer.run import RunSpec


def up(
    client: docker.DockerClient,
    spec: RunSpec,
    name: str | None = None,
    on_log: Callable[[str], None] = lambda line: None,
    **overrides,
):
    """Create, start and set up a container; ``overrides`` adjust the create call (Berth
    adds its limits, network and labels there). A failed setup leaves no container."""
    kwargs = spec.docker_create_kwargs()
    labels = {**kwargs.pop("labels"), **overrides.pop("labels", {})}
    kwargs.update(overrides)
    container = client.containers.create(name=name, labels=labels, **kwargs)
    try:
        container.start()
        run_lifecycle(client, container.id, spec, on_log=on_log)
    except Exception:
        container.remove(force=True, v=True)
        raise
    return container
