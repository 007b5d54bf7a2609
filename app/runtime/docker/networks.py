"""The instance's networks (one bridge per workspace, the egress network, the build
network) on subnets from Berth's pool, and the host firewall rules that keep workspaces
and builds off the host's own ports."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time

import docker

from app.runtime import ProvisionError, WorkspaceRef
from app.runtime.docker import names
from app.runtime.docker.names import BRIDGE_PREFIX, LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE


def find_network(client: docker.DockerClient, name: str):
    """The network called exactly ``name``, or None. The engine's name filter also matches
    part of a name: asked for workspace 1's network, it answers with workspace 12's."""
    for network in client.networks.list(names=[name]):
        if network.name == name:
            return network
    return None


class Networks:
    """Bridges of this instance, made once and found again by name."""

    def __init__(self, client: docker.DockerClient, instance: str, pool, prefix: int):
        self.client, self.instance, self.pool, self.prefix = client, instance, pool, prefix
        self._lock = threading.Lock()

    def _used_subnets(self) -> set:
        used = set()
        for network in self.client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    used.add(ipaddress.ip_network(config["Subnet"], strict=False))
        return used

    def ensure_network(self, ws: WorkspaceRef):
        """The workspace's own bridge network, on a subnet from Berth's pool; one made
        ahead for its id (make_ahead) is taken as it is. One of another owner, left by
        an earlier workspace of this id (a database restored from an older backup while
        the engine kept what came after), is removed first: it is never shared."""
        found = find_network(self.client, names.network_name(ws))
        if found is not None:
            owner = (found.attrs.get("Labels") or {}).get(names.LABEL_OWNER)
            if owner is None or owner == ws.owner:
                return found
            try:
                self.client.api.remove_network(found.id)
            except docker.errors.APIError as exc:
                raise ProvisionError(
                    f"the network {found.name} is left from another owner's workspace of "
                    f"this id and is in use ({exc.explanation or exc}); remove what uses "
                    "it, or let reconcile remove it"
                ) from None
        return self._make(
            names.network_name(ws),
            names.bridge_name(ws),
            {**names.labels(ws), LABEL_ROLE: "network"},
            internal=False,
        )

    def make_ahead(self, workspace_ids, keep_free: int) -> list[str]:
        """Bridges for workspaces not made yet, the ids the next ones will get: making a
        network takes the engine about a quarter of a second, most of what a create costs
        beyond a bare ``docker run``. They are named and labelled for their workspace as
        ensure_network would make them, but with no owner (none is known yet). None is
        made that would leave fewer than ``keep_free`` subnets free for the workspaces
        that need one now. Returns the names of those made."""
        made = []
        for workspace_id in workspace_ids:
            ref = WorkspaceRef(self.instance, workspace_id, "", "")
            name = names.network_name(ref)
            if find_network(self.client, name) is not None:
                continue
            if not self._free_subnets_beyond(keep_free):
                break
            labels = {**names.labels(ref), LABEL_ROLE: "network"}
            del labels[names.LABEL_OWNER]
            self._make(name, names.bridge_name(ref), labels, internal=False)
            made.append(name)
        return made

    def discard_made_ahead(self, ws: WorkspaceRef) -> None:
        """Remove the network made ahead for ``ws`` if it has one it will not use (its
        container is on the egress network). Best effort: reconcile looks again."""
        found = find_network(self.client, names.network_name(ws))
        if found is not None and names.LABEL_OWNER not in (found.attrs.get("Labels") or {}):
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_network(found.id)

    def _free_subnets_beyond(self, count: int) -> bool:
        used, free = self._used_subnets(), 0
        for subnet in self.pool.subnets(new_prefix=self.prefix):
            if not any(subnet.overlaps(u) for u in used):
                free += 1
                if free > count:
                    return True
        return False

    def ensure_egress_network(self):
        """The network of workspaces whose egress Berth controls: internal (no route out),
        no traffic between its containers, and only the gateway's address reachable,
        where Berth's egress proxy and dead DNS listen (app.egress)."""
        return self._bridge(
            self.egress_network_name,
            f"{BRIDGE_PREFIX}{self.instance}eg",
            {LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance, LABEL_ROLE: "egress"},
            internal=True,
            icc=False,  # sandboxes sharing the egress network must not reach each other
        )

    def ensure_build_network(self):
        """The network image builds run their RUN steps on: a bridge named like the
        workspaces' (berth*), so the same INPUT rule keeps builds off the host's ports,
        and with no traffic between the builds on it."""
        return self._bridge(
            f"berth-{self.instance}-build",
            f"{BRIDGE_PREFIX}{self.instance}bd",
            {LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance, LABEL_ROLE: "build"},
            internal=False,
            icc=False,
        )

    @property
    def egress_network_name(self) -> str:
        return f"berth-{self.instance}-egress"

    def egress_gateway(self, create: bool = True) -> str | None:
        """The egress network's gateway address; without ``create``, None until the
        worker has made the network (other processes only read it)."""
        if create:
            network = self.ensure_egress_network()
        else:
            network = find_network(self.client, self.egress_network_name)
            if network is None:
                return None
        network.reload()
        return network.attrs["IPAM"]["Config"][0]["Gateway"]

    def _bridge(self, name: str, bridge: str, labels: dict, internal: bool, icc: bool = True):
        # Found without the lock: the build and egress networks are there but once made,
        # and one being made ahead for another workspace must not hold this one up.
        made = find_network(self.client, name)
        return made if made is not None else self._make(name, bridge, labels, internal, icc)

    def _make(self, name: str, bridge: str, labels: dict, internal: bool, icc: bool = True):
        """The network made, under the lock (found again there: made a moment ago)."""
        with self._lock:
            existing = find_network(self.client, name)
            if existing is not None:
                return existing
            used = self._used_subnets()
            for subnet in self.pool.subnets(new_prefix=self.prefix):
                if any(subnet.overlaps(u) for u in used):
                    continue
                ipam = docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))]
                )
                try:
                    return self.client.networks.create(
                        name,
                        check_duplicate=True,  # the worker and the egress gateway may race
                        driver="bridge",
                        internal=internal,
                        ipam=ipam,
                        labels=labels,
                        options={
                            "com.docker.network.bridge.name": bridge,
                            "com.docker.network.bridge.enable_icc": "true" if icc else "false",
                        },
                    )
                except docker.errors.APIError as exc:
                    # Another process (the egress gateway, another Berth on the engine)
                    # made this network, or took this subnet, a moment ago; or is making
                    # it right now (its bridge is there before the network is listed).
                    making = "same bridge name" in str(exc.explanation or exc)
                    for _ in range(50 if making else 1):
                        existing = find_network(self.client, name)
                        if existing is not None:
                            return existing
                        time.sleep(0.1)
                    if "overlaps" in str(exc.explanation or exc):
                        used.add(subnet)
                        continue
                    raise
        raise ProvisionError(
            f"the subnet pool {self.pool} has no free /{self.prefix} left; delete unused "
            "workspaces or set BERTH_SUBNET_POOL to a larger range"
        )

    def ensure_isolation_rules(self, egress_port: int | None = None) -> str:
        """Stop workspaces and builds from reaching the host's own ports (the control
        plane) through their bridges: an INPUT rule on berth* interfaces; replies to
        connections the host opened stay allowed. From the egress network, only this
        instance's egress proxy and DNS are open. And stop other local users of the host
        from opening connections into workspaces (an IDE or a port reached around
        Berth's login): only Berth's own user may. Returns what was done, for the log."""
        iptables = shutil.which("iptables")
        if not iptables:
            return "iptables is not installed: workspaces can reach ports on the host"
        egress_bridge = f"{BRIDGE_PREFIX}{self.instance}eg"
        bridges = f"{BRIDGE_PREFIX}+"
        proxy = ["-i", egress_bridge, "-p", "tcp", "--dport", str(egress_port)]
        # Only this instance's gateway address: another Berth on the engine may run its
        # proxy on the same port of its own gateway.
        gateway = ["-d", self.egress_gateway()] if egress_port else []
        rules = [
            *(
                [
                    ("INPUT", [*proxy[:2], *gateway, *proxy[2:], "-j", "ACCEPT"]),
                    ("INPUT", ["-i", egress_bridge, *gateway]
                     + ["-p", "udp", "--dport", "53", "-j", "ACCEPT"]),
                ]
                if egress_port
                else []
            ),
            ("INPUT", ["-i", bridges, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"]
             + ["-j", "ACCEPT"]),
            ("INPUT", ["-i", bridges, "-j", "DROP"]),
            ("OUTPUT", ["-o", bridges, "-m", "conntrack", "--ctstate", "NEW", "-m", "owner"]
             + ["!", "--uid-owner", str(os.getuid()), "-j", "REJECT"]),
        ]  # fmt: skip
        # Workspaces and builds keep their way to the network, but never to a cloud's
        # metadata service (link-local), whose answers are the host's credentials.
        if subprocess.run([iptables, "-S", "DOCKER-USER"], capture_output=True).returncode == 0:
            rules.append(("DOCKER-USER", ["-i", bridges, "-d", "169.254.0.0/16", "-j", "REJECT"]))
        # Earlier Berths opened the proxy port on every address of the egress bridge.
        legacy = [("INPUT", [*proxy, "-j", "ACCEPT"])] if egress_port else []
        done = []
        for chain, rule in legacy:
            while (
                subprocess.run([iptables, "-D", chain, *rule], capture_output=True).returncode == 0
            ):
                done.append(f"removed {chain} {' '.join(rule)}")
        done += _drop_rules_of_gone_egress_bridges(iptables)
        positions: dict[str, int] = {}
        for chain, rule in rules:
            position = positions[chain] = positions.get(chain, 0) + 1
            exists = subprocess.run([iptables, "-C", chain, *rule], capture_output=True)
            if exists.returncode == 0:
                continue
            added = subprocess.run(
                [iptables, "-I", chain, str(position), *rule], capture_output=True, text=True
            )
            if added.returncode != 0:
                return f"could not add the {chain} rule: {added.stderr.strip()}"
            done.append(f"added {chain} {' '.join(rule)}")
        return "; ".join(done) if done else "firewall rules already in place"


# An instance's egress rules name its egress bridge: berth<instance>eg.
_EGRESS_BRIDGE = re.compile(rf"{BRIDGE_PREFIX}[0-9a-z]+eg")


def _drop_rules_of_gone_egress_bridges(iptables: str) -> list[str]:
    """Remove the INPUT rules that opened an egress proxy and DNS to an egress bridge
    that is gone: its Berth was removed (a test's, a trial install's) and nothing else
    takes them away. Left, they pile up on the host, and every iptables call slows with
    their number: the engine's making of a network took twice as long with 1,800 of
    them. The rules are listed before the bridges are looked at, and a Berth makes its
    bridge before its rules, so a rule of a bridge being made is never taken. A Berth
    whose bridge the engine makes again later puts its rules back on its next pass."""
    listed = subprocess.run([iptables, "-S", "INPUT"], capture_output=True, text=True)
    dropped = 0
    for line in listed.stdout.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:  # an interface name with a quote in it: not Berth's
            continue
        # Only openings (ACCEPT), as Berth makes them: a rule someone else put there to
        # refuse something stays, whatever interface it names.
        if words[:2] != ["-A", "INPUT"] or "-i" not in words or words[-2:] != ["-j", "ACCEPT"]:
            continue
        at = words.index("-i")
        if words[at - 1] == "!":  # "all but that bridge": not a rule Berth makes
            continue
        bridge = words[at + 1]
        if not _EGRESS_BRIDGE.fullmatch(bridge) or _interface_exists(bridge):
            continue
        rule = words[2:]
        if subprocess.run([iptables, "-D", "INPUT", *rule], capture_output=True).returncode == 0:
            dropped += 1
    return [f"removed {dropped} INPUT rules of egress bridges that are gone"] if dropped else []


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
