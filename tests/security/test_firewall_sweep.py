"""The host firewall's rules of an instance that is gone do not stay behind: each Berth
opens its egress proxy and DNS to its own egress bridge with two INPUT rules, and a
removed Berth (a test's, a trial install's) used to leave them for good. 1,800 of them
made every iptables call, and so the engine's making of a network, twice as slow."""

from __future__ import annotations

import secrets
import shutil
import subprocess

import docker
import pytest

from app.runtime.docker.runtime import DockerRuntime

pytestmark = pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables")

PORT = 3128


def _runtime(instance: str) -> DockerRuntime:
    pool = f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24"
    return DockerRuntime(docker.from_env(timeout=60), instance, pool, subnet_prefix=28)


def _input_rules() -> list[str]:
    listed = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def _mentioning(word: str) -> list[str]:
    return [rule for rule in _input_rules() if word in rule.split()]


@pytest.fixture
def instances(docker_client):
    made = [secrets.token_hex(4) for _ in range(3)]
    yield made
    for instance in made:
        for rule in _mentioning(f"berth{instance}eg"):
            subprocess.run(["iptables", "-D", *rule.split()[1:]], capture_output=True)
        for network in docker_client.networks.list(filters={"label": f"berth.instance={instance}"}):
            network.remove()
    subprocess.run(["iptables", "-D", "INPUT", "-i", "eth9zz", "-j", "ACCEPT"], capture_output=True)


def test_the_rules_of_a_gone_egress_bridge_go_and_a_live_ones_stay(instances):
    ours, neighbour, gone = instances
    # Another Berth on the engine, alive: its bridge and its rules.
    _runtime(neighbour).ensure_isolation_rules(PORT)
    assert len(_mentioning(f"berth{neighbour}eg")) == 2
    # A removed Berth's rules, its bridge long gone; and a rule that is not Berth's.
    for proto, port in (("tcp", PORT), ("udp", 53)):
        subprocess.run(
            ["iptables", "-I", "INPUT", "-d", "10.255.255.1/32", "-i", f"berth{gone}eg"]
            + ["-p", proto, "--dport", str(port), "-j", "ACCEPT"],
            check=True,
        )
    subprocess.run(["iptables", "-I", "INPUT", "-i", "eth9zz", "-j", "ACCEPT"], check=True)
    # An admin's refusal naming that gone bridge is not Berth's to remove.
    refusal = ["-i", f"berth{gone}eg", "-p", "tcp", "--dport", "22", "-j", "DROP"]
    subprocess.run(["iptables", "-I", "INPUT", *refusal], check=True)
    # "Everything but from that bridge" opens the host: taking it away would lock out.
    all_but = ["!", "-i", f"berth{gone}eg", "-p", "tcp", "--dport", "2", "-j", "ACCEPT"]
    subprocess.run(["iptables", "-I", "INPUT", *all_but], check=True)

    said = _runtime(ours).ensure_isolation_rules(PORT)

    assert sorted(_mentioning(f"berth{gone}eg")) == [
        f"-A INPUT ! -i berth{gone}eg -p tcp -m tcp --dport 2 -j ACCEPT",
        f"-A INPUT -i berth{gone}eg -p tcp -m tcp --dport 22 -j DROP",
    ]
    assert "INPUT rules of egress bridges that are gone" in said
    assert len(_mentioning(f"berth{neighbour}eg")) == 2
    assert len(_mentioning(f"berth{ours}eg")) == 2
    assert _mentioning("eth9zz") != []
    assert "-A INPUT -i berth+ -j DROP" in _input_rules()
    # A second pass finds its own in place (it may find another gone Berth's to drop).
    assert "added" not in _runtime(ours).ensure_isolation_rules(PORT)


def test_a_berths_own_rules_come_back_with_its_bridge(instances, docker_client):
    ours = instances[0]
    runtime = _runtime(ours)
    runtime.ensure_isolation_rules(PORT)
    for network in docker_client.networks.list(filters={"label": f"berth.instance={ours}"}):
        network.remove()  # an admin's prune: the bridge is gone, its rules are stale
    _runtime(instances[1]).ensure_isolation_rules(PORT)  # another Berth's pass drops them
    assert _mentioning(f"berth{ours}eg") == []
    # The next pass of its own makes the bridge again and puts its rules back.
    runtime.ensure_isolation_rules(PORT)
    assert len(_mentioning(f"berth{ours}eg")) == 2
