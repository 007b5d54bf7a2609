"""``devcontainer up`` as the reference CLI does it, on the Docker engine: a container
from a RunSpec, started and set up, with none of Berth's policy. The conformance tests
compare Berth's devcontainer engine with the reference through it."""

from __future__ import annotations

from collections.abc import Callable

from app.devcontainer.hooks import run_lifecycle
from app.devcontainer.run import RunSpec
from app.runtime.docker import spec as specs
from app.runtime.docker.networks import find_network
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
    if spec.compose is not None:
        return compose_up(runtime, spec, on_log=on_log, **overrides)
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


COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


def _compose_mounts(mounts: list, project: str, volumes: list[str]) -> list:
    """A project's named volumes are ``<project>_<name>`` on the engine, as Compose names
    them."""
    for mount in mounts:
        if mount.get("Type") == "volume" and mount.get("Source") in volumes:
            mount["Source"] = f"{project}_{mount['Source']}"
    return mounts


def _create(client, name: str, network: str, alias: str, kwargs: dict):
    """A project's container on its network, reached by its service name, started."""
    endpoint = client.api.create_endpoint_config(aliases=[alias])
    container = client.containers.create(
        name=name, network=network, networking_config={network: endpoint}, **kwargs
    )
    container.start()
    return container


def compose_up(
    runtime: DockerRuntime,
    spec: RunSpec,
    on_log: Callable[[str], None] = lambda line: None,
    **overrides,
):
    """``up`` for a compose config: the project's network and volumes, each started
    service after those it depends on, the devcontainer's service last, each reached by
    its service name. Everything of the project is removed again when a step fails."""
    compose = spec.compose
    client = runtime.client
    labels = {**overrides.pop("labels", {}), COMPOSE_PROJECT: compose.project}
    network = f"{compose.project}_default"
    try:
        if find_network(client, network) is None:
            client.networks.create(network, labels=labels)
        for volume in compose.volumes:
            client.volumes.create(f"{compose.project}_{volume}", labels=labels)
        for service in compose.services:
            kwargs = specs.service_create_kwargs(service)
            kwargs["labels"].update(labels, **{COMPOSE_SERVICE: service.name})
            _compose_mounts(kwargs["mounts"], compose.project, compose.volumes)
            name = f"{compose.project}_{service.name}_1"
            _create(client, name, network, service.name, kwargs)
        kwargs = specs.create_kwargs(spec)
        kwargs["labels"] = {**kwargs["labels"], **labels, COMPOSE_SERVICE: compose.service}
        _compose_mounts(kwargs["mounts"], compose.project, compose.volumes)
        if spec.stop_signal:
            kwargs["stop_signal"] = spec.stop_signal
        kwargs.update(overrides)
        name = f"{compose.project}_{compose.service}_1"
        container = _create(client, name, network, compose.service, kwargs)
        run_lifecycle(runtime, container.id, spec, on_log=on_log)
    except Exception:
        compose_down(runtime, compose.project)
        raise
    return container


def compose_down(runtime: DockerRuntime, project: str) -> None:
    """Remove a project's containers, network and volumes."""
    client = runtime.client
    label = {"label": f"{COMPOSE_PROJECT}={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=label):
        network.remove()
    for volume in client.volumes.list(filters=label):
        volume.remove(force=True)
