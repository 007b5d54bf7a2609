"""A workspace's network is found by its exact name. The engine's name filter also
matches part of a name, so asking for workspace 1's network used to answer with
workspace 12's when workspace 1's was gone (an admin's `docker network prune` removes
the networks of stopped workspaces): its next container joined the other person's
bridge, past the isolation of a network per workspace."""

from __future__ import annotations

import secrets

import docker
import pytest

from app.runtime import ProvisionError, WorkspaceRef
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


def test_a_network_left_by_another_owners_workspace_of_the_same_id_is_not_shared(
    docker_client, instance
):
    """A database restored from an older backup hands out an id again while the engine
    kept the network of the workspace that had it: the new workspace gets a network of
    its own, and one still in use is refused with words."""
    runtime = _runtime(instance)
    left = runtime.networks.ensure_network(WorkspaceRef(instance, 5, "bob", "later"))
    mine = runtime.networks.ensure_network(WorkspaceRef(instance, 5, "ann", "mine"))
    assert mine.id != left.id
    assert docker_client.networks.get(mine.id).attrs["Labels"]["berth.owner"] == "ann"
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(left.id)

    used = runtime.networks.ensure_network(WorkspaceRef(instance, 6, "bob", "busy"))
    holder = docker_client.containers.run(
        "berth-base:bookworm",
        ["sleep", "60"],
        network=used.name,
        detach=True,
        remove=True,
        labels={"berth.instance": instance},
    )
    try:
        with pytest.raises(ProvisionError, match="another owner's workspace"):
            runtime.networks.ensure_network(WorkspaceRef(instance, 6, "ann", "mine"))
    finally:
        holder.remove(force=True)


def test_a_network_made_ahead_for_a_sandbox_goes_back_and_an_owned_one_stays(
    docker_client, instance
):
    runtime = _runtime(instance)
    assert runtime.make_networks_ahead([7], keep_free=0) == [f"berth-{instance}-ws-7"]
    runtime.networks.discard_made_ahead(WorkspaceRef(instance, 7, "ann", "sandbox"))
    assert find_network(docker_client, f"berth-{instance}-ws-7") is None
    owned = runtime.networks.ensure_network(WorkspaceRef(instance, 8, "ann", "person"))
    runtime.networks.discard_made_ahead(WorkspaceRef(instance, 8, "ann", "person"))
    assert find_network(docker_client, owned.name).id == owned.id
