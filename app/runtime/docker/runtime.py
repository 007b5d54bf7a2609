"""The Docker runtime: workspaces as hardened containers on one Docker engine.

It implements app.runtime.Runtime from the parts next to it (the hardening spec,
networks and the firewall, volumes, exec, images) and is the only code that holds a
docker-py client; engine errors leave it as ProvisionError.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import docker

from app.runtime import (
    ImageInfo,
    Instance,
    Limits,
    NoSuchService,
    Placement,
    ProvisionError,
    Resource,
    Usage,
    WorkspaceRef,
)
from app.runtime.docker import base_image, control, names, spec, tools
from app.runtime.docker.exec import Exec
from app.runtime.docker.hijack import Frames
from app.runtime.docker.images import Images
from app.runtime.docker.names import LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE, LABEL_WORKSPACE
from app.runtime.docker.networks import Networks, find_network
from app.runtime.docker.volumes import Volumes
from app.runtime.layout import AGENT_SOCKET_DIR, KEEPALIVE_DIR

log = logging.getLogger("berth.runtime")

KEEPALIVE_SCRIPT = Path(__file__).with_name("berth-keepalive")


@contextlib.contextmanager
def refused(what: str):
    """Engine errors leave the runtime as ProvisionError, saying ``what`` failed."""
    try:
        yield
    except docker.errors.NotFound as exc:
        raise ProvisionError(f"{what}: not found ({exc.explanation or exc})") from exc
    except docker.errors.DockerException as exc:
        explanation = getattr(exc, "explanation", None) or exc
        raise ProvisionError(f"{what}: {explanation}") from exc


def connect(settings, timeout: int = 60, **options) -> DockerRuntime:
    """A runtime on the engine ``settings`` name, for this instance."""
    with refused(f"connecting to the Docker engine at {settings.docker_host}"):
        client = docker.DockerClient(base_url=settings.docker_host, timeout=timeout)
    options.setdefault("control", settings.engine_control)
    return DockerRuntime(client, settings.instance, settings.subnet_pool, **options)


def _labels(container) -> dict:
    """A container's labels, from a full or a sparse (list) answer."""
    attrs = container.attrs
    return (attrs.get("Config") or {}).get("Labels") or attrs.get("Labels") or {}


def _instance(container) -> Instance:
    attrs = container.attrs
    state = attrs.get("State") or {}
    started = state.get("StartedAt") or ""
    labels = container.labels or {}
    return Instance(
        id=container.id,
        name=container.name,
        workspace_id=names.workspace_id(labels),
        status=state.get("Status") or container.status,
        started_at=None if not started or started.startswith("0001-") else started,
        exit_code=state.get("ExitCode"),
        restart_count=attrs.get("RestartCount", 0) or 0,
        remote_user=labels.get(names.LABEL_USER, "root"),
        folder=labels.get(names.LABEL_FOLDER),
        # Made by an older Berth with a writable host folder at /run/berth (recreated:
        # the workspace could reach host files through it).
        outdated=any(
            m.get("Destination") == KEEPALIVE_DIR and m.get("Type") == "bind"
            for m in attrs.get("Mounts") or []
        ),
        agent_sockets=any(
            m.get("Destination") == AGENT_SOCKET_DIR for m in attrs.get("Mounts") or []
        ),
    )


class DockerRuntime:
    """Workspaces of one Berth instance on one Docker engine."""

    def __init__(
        self,
        client: docker.DockerClient,
        instance: str,
        subnet_pool: str = "10.231.0.0/16",
        subnet_prefix: int = 24,
        agent_socket_root: Path | None = None,
        helper_dir: Path | None = None,
        tools: bool = False,
        control: str = "auto",
    ):
        self.client = client
        self.instance = instance
        # Mount the tools bundle (code-server) read-only into new workspace containers.
        self.tools = tools
        # Host folder of Berth's own where berth-keepalive is kept, mounted read-only into
        # every workspace; None leaves the script out.
        self.helper_dir = helper_dir
        # Host folder with one sub-folder per workspace for forwarded SSH agent sockets;
        # None leaves agent forwarding out (the folder must be on the engine's host).
        self.agent_socket_root = agent_socket_root
        self.control = control_ = control_for(client, instance, control)
        self.networks = Networks(client, instance, ipaddress.ip_network(subnet_pool), subnet_prefix)
        self.volumes_ = Volumes(client)
        self.execs = Exec(client, control_)
        self.images = Images(client)

    def close(self) -> None:
        self.client.close()

    @functools.cached_property
    def host(self) -> str:
        """Which engine: what a second host would be told apart by."""
        return str(self.client.api.base_url)

    # --- lifecycle --------------------------------------------------------------------

    def _managed(self, kind: str, ws_id: int | None = None) -> list:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={self.instance}"]}
        if ws_id is not None:
            filters["label"].append(f"{LABEL_WORKSPACE}={ws_id}")
        if kind == "containers":
            return self.client.containers.list(all=True, filters=filters)
        if kind == "volumes":
            return self.client.volumes.list(filters=filters)
        return self.client.networks.list(filters=filters)

    def find(self, workspace_id: int) -> Instance | None:
        with refused("looking up the workspace's container"):
            for container in self._managed("containers", workspace_id):
                if container.labels.get(LABEL_ROLE) == "workspace":
                    return _instance(container)
        return None

    def _keepalive_script(self) -> Path:
        """berth-keepalive in Berth's helper folder, so the bind source is on the engine's
        host also where the engine is not this machine's (the appliance shares the data
        dir with it, not Berth's installed package)."""
        target = self.helper_dir / KEEPALIVE_SCRIPT.name
        script = KEEPALIVE_SCRIPT.read_bytes()
        if not target.exists() or target.read_bytes() != script:
            partial = target.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(script)
            partial.chmod(0o755)
            partial.replace(target)
        return target

    def create(
        self, ws: WorkspaceRef, run_spec, limits: Limits, home: str, *, egress_port=None, **options
    ) -> Instance:
        """Create (not start) the hardened container of ``ws`` from ``run_spec``. With
        ``egress_port``, on the egress network, its DNS and proxy at the gateway; the
        other options (agent, owner, extra_env) as spec.container takes them."""
        with refused("preparing the workspace's network"):
            if egress_port:
                network = self.networks.ensure_egress_network().name
                egress = spec.Egress(self.networks.egress_gateway(), egress_port)
                self.networks.discard_made_ahead(ws)  # its subnet back to the pool
            else:
                network, egress = self.networks.ensure_network(ws).name, None
        agent_dir = self.agent_socket_dir(ws.id)
        if agent_dir is not None:
            agent_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        kwargs, roles = spec.container(
            ws,
            run_spec,
            limits,
            home,
            network=network,
            egress=egress,
            tools=self.tools,
            keepalive_source=str(self._keepalive_script()) if self.helper_dir else None,
            agent_dir=str(agent_dir) if agent_dir is not None else None,
            **options,
        )
        companions = []
        if run_spec.compose is not None:
            if egress is not None:
                raise ProvisionError(
                    "a compose config cannot be an agent sandbox: its services would share "
                    "the egress network with every sandbox"
                )
            for order, service in enumerate(run_spec.compose.services):
                companions.append(
                    spec.companion(
                        ws,
                        service,
                        order,
                        limits,
                        network=network,
                        workspace_volume=names.volume_name(ws, "workspace"),
                    )
                )
                roles += companions[-1][1]
            kwargs["networking_config"] = {
                network: self.client.api.create_endpoint_config(aliases=[run_spec.compose.service])
            }
            kwargs["labels"][names.LABEL_SERVICE] = run_spec.compose.service
        with refused("preparing the workspace's volumes"):
            for role in dict.fromkeys(("workspace", "home", *roles)):
                self.volumes_.ensure_volume(ws, role)
        try:
            if companions:  # none of an earlier create stays (a service since removed)
                self._discard_services(ws.id)
            for service_kwargs, _ in companions:
                alias = service_kwargs["labels"][names.LABEL_SERVICE]
                endpoint = self.client.api.create_endpoint_config(aliases=[alias])
                self.client.containers.create(
                    networking_config={network: endpoint}, **service_kwargs
                )
            return _instance(self.client.containers.create(**kwargs))
        except docker.errors.DockerException as exc:
            with contextlib.suppress(ProvisionError):
                self._discard_services(ws.id)
            raise ProvisionError(
                f"Docker refused the container: {exc.explanation or exc}"
            ) from None

    def _services(self, workspace_id: int, service: str | None = None, running=False) -> list:
        """A compose workspace's other services (or the one named), in the order they
        start: one list call, filtered by the engine."""
        labels = [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_INSTANCE}={self.instance}",
            f"{LABEL_WORKSPACE}={workspace_id}",
            f"{LABEL_ROLE}=service",
        ]
        if service is not None:
            labels.append(f"{names.LABEL_SERVICE}={service}")
        filters = {"label": labels, **({"status": "running"} if running else {})}
        found = self.client.containers.list(all=not running, filters=filters, sparse=True)
        return sorted(found, key=lambda c: int(_labels(c).get(names.LABEL_ORDER, "0") or 0))

    def _labels_of(self, instance_id: str, attrs: dict | None = None) -> dict:
        if attrs is None:
            with refused("looking at the container"):
                attrs = self.client.api.inspect_container(instance_id)
        return (attrs.get("Config") or {}).get("Labels") or {}

    def _services_of(self, instance_id: str, attrs: dict | None = None) -> list:
        """The services beside a compose workspace's container (none for any other)."""
        labels = self._labels_of(instance_id, attrs)
        if labels.get(names.LABEL_SERVICE) is None:
            return []
        return self._services(names.workspace_id(labels))

    def _discard_services(self, workspace_id: int) -> None:
        """Remove every service container of the workspace, each on its own (one already
        gone does not keep the others)."""
        with refused("removing the workspace's services"):
            found = self._services(workspace_id)
        for container in found:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.remove_container(container.id, force=True)

    def start(self, instance_id: str) -> Instance:
        attrs = None
        try:
            attrs = self.adopt(instance_id)
        except ProvisionError as exc:  # the start matters more than the policy
            log.warning("could not set the restart policy of %s: %s", instance_id[:12], exc)
        try:
            # A compose workspace's services first, each after what it depends on.
            for service in self._services_of(instance_id, attrs):
                what = f"the service {_labels(service).get(names.LABEL_SERVICE)}"
                self.client.api.start(service.id)
            what = "the container"
            self.client.api.start(instance_id)
        except docker.errors.APIError as exc:
            raise ProvisionError(
                f"Docker could not start {what}: {exc.explanation or exc}"
            ) from None
        with refused("looking at the started container"):
            return _instance(self.client.containers.get(instance_id))

    def adopt(self, instance_id: str) -> dict:
        """A container made by an older Berth gets today's restart policy, in place.
        Returns what the engine said of the container."""
        with refused("setting the restart policy"):
            attrs = self.client.api.inspect_container(instance_id)
            policy = (attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
            if policy.get("Name") != spec.RESTART_POLICY["Name"]:
                self.client.api.update_container(instance_id, restart_policy=spec.RESTART_POLICY)
        return attrs

    def stop(self, instance_id: str, grace_seconds: int = 10) -> None:
        """SIGTERM, then SIGKILL after the grace period (Docker's stop does exactly that)."""
        try:
            with refused("stopping the container"):
                self.client.api.stop(instance_id, timeout=grace_seconds)
        finally:  # the services stop also when the workspace container would not
            with refused("stopping the workspace's services"):
                for service in reversed(self._services_of(instance_id)):
                    self.client.api.stop(service.id, timeout=grace_seconds)

    def discard(self, instance_id: str) -> None:
        """Remove the container and a compose workspace's services (volumes stay)."""
        with contextlib.suppress(ProvisionError):
            labels = self._labels_of(instance_id)
            if labels.get(names.LABEL_SERVICE) is not None:
                self._discard_services(names.workspace_id(labels))
        with refused("removing the container"), contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(instance_id, force=True)

    def poll(self, instance_id: str) -> Instance | None:
        try:
            return _instance(self.client.containers.get(instance_id))
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ProvisionError(f"looking at the container: {exc}") from exc

    def placement(self, instance_id: str) -> Placement:
        """Where the started workspace is reached, for the database (forward_auth, exec
        and the SSH gateway read it there)."""
        with refused("looking up the container's address"):
            container = self.client.containers.get(instance_id)
        address = None
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        for network in networks.values():
            if network.get("IPAddress"):
                address = network["IPAddress"]
                break
        found = _instance(container)
        return Placement(
            instance_id=found.id,
            address=address if found.running else None,
            host=self.host,
            remote_user=found.remote_user,
            folder=found.folder,
            started_at=found.started_at,
        )

    def remove_workspace(self, workspace_id: int, keep_volumes: bool = False) -> None:
        """Remove the workspace's container and network, and its volumes unless kept."""
        with refused("removing the workspace's containers, network and volumes"):
            for container in self._managed("containers", workspace_id):
                container.remove(force=True)
            for network in self._managed("networks", workspace_id):
                network.remove()
            if not keep_volumes:
                for volume in self._managed("volumes", workspace_id):
                    volume.remove(force=True)
        if self.agent_socket_root is not None:
            shutil.rmtree(self.agent_socket_root / str(workspace_id), ignore_errors=True)

    def inventory(self) -> tuple[list[Instance], list[Resource]]:
        """Everything this instance holds on the engine: its workspace containers, and
        every container, network and volume as a Resource (for reconcile)."""
        instances, resources = [], []
        with refused("listing what Berth holds on the engine"):
            for container in self._managed("containers"):
                labels = container.labels or {}
                role = labels.get(LABEL_ROLE, "")
                resources.append(
                    Resource(
                        "instance", container.id, container.name, names.workspace_id(labels), role
                    )
                )
                if role == "workspace":
                    instances.append(_instance(container))
            for network in self._managed("networks"):
                labels = network.attrs.get("Labels") or {}
                resources.append(
                    Resource(
                        "network",
                        network.id,
                        network.name,
                        names.workspace_id(labels),
                        labels.get(LABEL_ROLE, ""),
                        labels.get(names.LABEL_OWNER),
                    )
                )
            for volume in self._managed("volumes"):
                resources.append(self._volume(volume))
        return instances, resources

    @staticmethod
    def _volume(volume) -> Resource:
        labels = volume.attrs.get("Labels") or {}
        return Resource(
            "volume",
            volume.name,
            volume.name,
            names.workspace_id(labels),
            labels.get(LABEL_ROLE, ""),
        )

    def remove(self, resource: Resource) -> None:
        with refused(f"removing {resource.name}"), contextlib.suppress(docker.errors.NotFound):
            if resource.kind == "instance":
                self.client.api.remove_container(resource.id, force=True)
            elif resource.kind == "network":
                self.client.api.remove_network(resource.id)
            else:
                self.client.api.remove_volume(resource.id, force=True)

    def usage(self, instance_id: str) -> Usage:
        """CPU time so far (all its processes), memory and processes now."""
        with refused("reading the container's usage"):
            raw = self.client.api.stats(instance_id, stream=False, one_shot=True)
        memory = raw.get("memory_stats") or {}
        return Usage(
            cpu_ns=int(raw.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0)),
            memory_bytes=memory.get("usage", 0),
            memory_limit=memory.get("limit", 0),
            pids=(raw.get("pids_stats") or {}).get("current", 0),
        )

    def owner_on_egress(self, address: str) -> int | None:
        """The workspace whose container has ``address`` on the egress network now."""
        with refused("looking up the egress network"):
            network = find_network(self.client, self.networks.egress_network_name)
            if network is None:
                return None
            network.reload()
            for container_id, about in (network.attrs.get("Containers") or {}).items():
                if about.get("IPv4Address", "").split("/")[0] != address:
                    continue
                try:
                    labels = self.client.containers.get(container_id).labels
                except docker.errors.NotFound:
                    return None
                if labels.get(LABEL_INSTANCE) != self.instance:
                    return None
                return names.workspace_id(labels) or None
        return None

    # --- exec, files, tunnels -------------------------------------------------------------

    def exec_stream(self, instance_id: str, argv: list[str], **kwargs) -> Iterator:
        with refused("running the command"):
            yield from self.execs.exec_stream(instance_id, argv, **kwargs)

    def exec(self, instance_id: str, argv: list[str], max_output: int | None = None, **kwargs):
        with refused("running the command"):
            return self.execs.exec(instance_id, argv, max_output=max_output, **kwargs)

    def open_exec(self, instance_id: str, argv: list[str], **kwargs):
        with refused("starting the command"):
            return self.execs.open_exec(instance_id, argv, **kwargs)

    @staticmethod
    def output_splitter() -> Callable[[bytes], list[tuple[int, bytes]]]:
        """Splits a non-tty exec socket's bytes into (1 stdout | 2 stderr, bytes)."""
        return Frames().feed

    def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        self.execs.resize_exec(exec_id, height, width)

    def exec_exit_code(self, exec_id: str, wait_seconds: float = 5.0) -> int | None:
        with refused("reading the command's exit code"):
            return self.execs.exec_exit_code(exec_id, wait_seconds)

    def end_exec(self, exec_id: str, grace_seconds: float = 2.0) -> None:
        self.execs.end_exec(exec_id, grace_seconds)

    def exec_owns(self, exec_id: str, pid: int | None) -> bool:
        return self.execs.exec_owns(exec_id, pid)

    def process_below(self, pid: int | None, inner_pid: int, start: str) -> bool:
        return self.execs.process_below(pid, inner_pid, start)

    def write_file(self, instance_id: str, path: str, content: bytes, user: str) -> None:
        with refused(f"writing {path}"):
            self.execs.write_file(instance_id, path, content, user)

    def read_keepalive(self, instance_id: str, user: str) -> tuple[float, str] | None:
        with refused("reading the keep-alive mark"):
            return self.execs.read_keepalive(instance_id, user)

    def open_tunnel(self, instance_id: str, host: str, port: int):
        """A connection to ``host``:``port`` from inside the workspace: its loopback, or
        another service of a compose workspace by its name (nothing else)."""
        if host not in ("127.0.0.1", "::1"):
            host = self.service_address(instance_id, host)
        with refused("opening a connection into the workspace"):
            return self.execs.open_tunnel(instance_id, host, port)

    def service_address(self, instance_id: str, service: str) -> str:
        """The address of a running service of the workspace on the workspace's own
        network (its own service: its loopback). Two engine calls, filtered by it."""
        labels = self._labels_of(instance_id)
        own = labels.get(names.LABEL_SERVICE)
        if own is not None and service == own:
            return "127.0.0.1"
        workspace_id = names.workspace_id(labels)
        if own is not None and workspace_id:
            network = names.workspace_network(self.instance, workspace_id)
            with refused("looking up the workspace's services"):
                found = self._services(workspace_id, service, running=True)
            for container in found:
                settings = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
                address = (settings.get(network) or {}).get("IPAddress")
                if address:
                    return address
        raise NoSuchService(f"{service!r} is not a running service of this workspace")

    def agent_socket_dir(self, workspace_id: int) -> Path | None:
        return self.agent_socket_root / str(workspace_id) if self.agent_socket_root else None

    # What the devcontainer engine runs its lifecycle commands through.
    def run(self, instance_id: str, argv: list[str], **kwargs) -> tuple[int, str]:
        with refused("running a lifecycle command"):
            return self.execs.run(instance_id, argv, **kwargs)

    def facts(self, instance_id: str) -> dict:
        """The container's environment, and when it was made and last started."""
        with refused("looking at the container"):
            attrs = self.client.api.inspect_container(instance_id)
        env = attrs.get("Config", {}).get("Env") or []
        return {
            "env": dict(item.split("=", 1) for item in env if "=" in item),
            "created": attrs["Created"],
            "started_at": attrs["State"]["StartedAt"],
        }

    # --- volumes ------------------------------------------------------------------------

    @staticmethod
    def volume_name(ws: WorkspaceRef, role: str) -> str:
        return names.volume_name(ws, role)

    def volumes(self, workspace_id: int) -> list[Resource]:
        with refused("listing the workspace's volumes"):
            return [self._volume(v) for v in self._managed("volumes", workspace_id)]

    def seed_workspace_volume(
        self, ws: WorkspaceRef, instance_id: str, uid: int, gid: int, source_dir=None
    ):
        with refused("preparing the workspace volume"):
            self.volumes_.seed_workspace_volume(ws, instance_id, uid, gid, source_dir)

    def discard_volume(self, ws: WorkspaceRef, role: str) -> None:
        """Remove the workspace's volume ``role`` (one made by anything else is left)."""
        with refused(f"removing the volume {role}"):
            self.volumes_.discard_volume(ws, role)

    def export_volume(self, ws: WorkspaceRef, role: str, image: str, destination: Path) -> None:
        with refused(f"reading the volume {role}"):
            self.volumes_.export_volume(ws, role, image, destination)

    def import_volume(self, ws: WorkspaceRef, role: str, image: str, source: Path) -> None:
        with refused(f"restoring the volume {role}"):
            self.volumes_.import_volume(ws, role, image, source)

    # --- images -------------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        with refused(f"looking up the image {ref}"):
            return self.images.image(ref)

    def pull(self, ref: str) -> None:
        self.images.pull(ref)

    def build_image(self, what: str, on_log, **kwargs) -> str:
        return self.images.build(what, on_log, **kwargs)

    def discard_layers(self, layers: list[str]) -> None:
        self.images.discard_layers(layers)

    def read_image_file(self, image: str, path: str) -> bytes | None:
        with refused(f"reading {path} of the image"):
            return self.images.read_image_file(image, path)

    def context_files(self, root: Path, exclude: list[str]) -> list[str]:
        return self.images.context_files(root, exclude)

    def remove_image_if_unused(self, image: str, protected: set[str]) -> bool:
        with refused("removing an unused image"):
            return self.images.remove_if_unused(image, protected)

    # --- the instance's shared pieces -----------------------------------------------------

    def build_network(self) -> str:
        with refused("preparing the build network"):
            return self.networks.ensure_build_network().name

    def make_networks_ahead(self, workspace_ids, keep_free: int = 8) -> list[str]:
        with refused("making networks for the next workspaces"):
            return self.networks.make_ahead(workspace_ids, keep_free)

    def egress_gateway(self, create: bool = True) -> str | None:
        with refused("preparing the egress network"):
            return self.networks.egress_gateway(create)

    def ensure_isolation_rules(self, egress_port: int | None = None) -> str:
        with refused("checking the firewall rules"):
            return self.networks.ensure_isolation_rules(egress_port)

    def ensure_base_image(self, on_log: Callable[[str], None] = lambda line: None) -> str:
        with refused("making the base image"):
            return base_image.ensure_base_image(self.client, base_image.BASE_IMAGE, on_log)

    def ensure_control_image(self, on_log: Callable[[str], None] = lambda line: None) -> str:
        """The engine's control image (tunnels and ending commands where the engine's
        processes are not visible); returns what it is, for the log."""
        with refused("making the control image"):
            image = control.build_image(
                self.client, base_image.BASE_IMAGE, self.build_network(), on_log
            )
        return f"{control.CONTROL_IMAGE} ({image[:19]})"

    def ensure_tools(self, on_log: Callable[[str], None], engine_dir: str = "", **options):
        with refused("building the IDE bundle"):
            tools.ensure(
                self.client, on_log=on_log, engine_dir=engine_dir, instance=self.instance, **options
            )

    def export_tools(self, out) -> None:
        """Write the finished IDE bundle to the binary file ``out`` (``berth tools
        export``), for an engine that cannot build it."""
        with refused("exporting the IDE bundle"):
            tools.export(self.client, out)

    def import_tools(self, path: Path, on_log: Callable[[str], None], engine_dir: str = "") -> bool:
        """Make the bundle in the archive at ``path`` this engine's (``berth tools
        import``); False when that version was already there."""
        with refused("importing the IDE bundle"):
            return tools.import_archive(
                self.client, path, on_log, engine_dir=engine_dir, instance=self.instance
            )

    def tools_ready(self) -> bool:
        """Whether the IDE bundle of this Berth's version is built (in the engine's
        volume berth-tools)."""
        with refused("looking at the IDE bundle"):
            return tools.ready(self.client)

    def engine_info(self) -> tuple[dict, dict]:
        """The engine's version and info documents (berth doctor)."""
        with refused("asking the engine"):
            return self.client.version(), self.client.info()


def control_for(client: docker.DockerClient, instance: str, mode: str) -> control.EngineControl:
    return control.EngineControl(client, instance, mode)
