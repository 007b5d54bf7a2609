"""``devcontainer up`` as the reference CLI does it, on the Docker engine: a container
from a RunSpec, started and set up, with none of Berth's policy. The conformance tests
compare Berth's devcontainer engine with the reference through it."""

from __future__ import annotations

from collections.abc import Callable

from app.devcontainer.hooks import run_lifecycle
from app.devcontainer.run import RunSpec
from app.runtime.docker import spec as specs
from app.runtime.docker.runtime import DockerRuntime


def up(
    runtime: DockerRuntime,
    spec: RunSpec,
    name: str | None = None,
    on_log: Callable[[str], None] = lambda line: None,
    **overrides,
):
    """Create, start and set up a container; ``overrides`` adjust the create call. A
    failed setup leaves no container. Returns docker-py's container (tests look at it)."""
    kwargs = specs.create_kwargs(spec)
    labels = {**kwargs.pop("labels"), **overrides.pop("labels", {})}
    kwargs.update(overrides)
    container = runtime.client.containers.create(name=name, labels=labels, **kwargs)
    try:
        container.start()
        run_lifecycle(runtime, container.id, spec, on_log=on_log)
    except Exception:
        container.remove(force=True, v=True)
        raise
    return container
