"""A workspace's network is found by its exact name. The engine's name filter also
matches part of a name, so asking for workspace 1's network used to answer with
workspace 12's when workspace 1's was gone (an admin's `docker network prune` removes
the networks of stopped workspaces): its next container joined the other person's
bridge, past the isolation of a network per workspace."""

from __future__ import annotations

import secrets

import docker
import pytest

from app.runtime import WorkspaceRef
from app.runtime.docker.networks import find_network
from app.runtime.docker.runtime import DockerRuntime


@pytest.fixture
def instance(docker_client):
    instance = secrets.token_hex(4)
    yield instance
    for network in docker_client.networks.list(filters={"label": f"berth.instance={instance}"}):
        network.remove()


def _runtime(instance: str) -> DockerRuntime:
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"
    return DockerRuntime(docker.from_env(timeout=60), instance, pool, subnet_prefix=28)


def test_a_missing_network_is_made_not_taken_from_a_workspace_whose_name_extends_it(
    docker_client, instance
):
    runtime = _runtime(instance)
    twelve = runtime.networks.ensure_network(WorkspaceRef(instance, 12, "bob", "other"))
    one = runtime.networks.ensure_network(WorkspaceRef(instance, 1, "ann", "mine"))
    assert one.id != twelve.id
    assert one.name == f"berth-{instance}-ws-1"
    assert docker_client.networks.get(one.id).attrs["Labels"]["berth.workspace"] == "1"
    # Found again (the allowed use): the same network, not a second one.
    again = runtime.networks.ensure_network(WorkspaceRef(instance, 1, "ann", "mine"))
    assert again.id == one.id


def test_the_egress_lookup_and_find_network_take_only_the_exact_name(docker_client, instance):
    longer = docker_client.networks.create(
        f"berth-{instance}-egress-not-mine", labels={"berth.instance": instance}
    )
    runtime = _runtime(instance)
    assert find_network(docker_client, f"berth-{instance}-egress") is None
    assert runtime.networks.egress_gateway(create=False) is None
    assert runtime.owner_on_egress("10.0.0.1") is None
    made = runtime.networks.ensure_egress_network()
    assert made.id != longer.id
    assert find_network(docker_client, f"berth-{instance}-egress").id == made.id
