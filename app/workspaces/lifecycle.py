"""Carrying out transitions (the worker's side). Every step is idempotent, so a job
interrupted by a crash can simply run again."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app import audit, egress, states
from app import devcontainer as dc
from app.backups import BackupError
from app.backups import workspaces as volume_backups
from app.config import Settings
from app.devcontainer.build import ImageUser, image_users
from app.egress import directory as egress_directory
from app.models import Transition, Workspace, utcnow
from app.runtime import Limits, ProvisionError, Runtime, WorkspaceRef
from app.runtime.layout import BASE_IMAGE
from app.states import JobStatus, Kind
from app.states import Status as S
from app.workspaces import (
    apps,
    dotfiles,
    git,
    ide,
    ide_sessions,
    pool,
    quotas,
    sandboxes,
    templates,
    wakeup,
)

STOP_GRACE_SECONDS = 10
logger = logging.getLogger("berth.worker")


class JobFailed(Exception):
    """A transition could not complete; the message is what the user sees. With
    ``keep_status`` the workspace is as it was (nothing was changed), not failed."""

    def __init__(self, message: str, keep_status: bool = False):
        super().__init__(message)
        self.keep_status = keep_status


class JobLog:
    """Collects a job's lines and the time each of its stages took, and writes them to
    its transition row, at most twice a second."""

    def __init__(self, transition: Transition, clock: Callable[[], float] = time.perf_counter):
        self.transition = transition
        self.lines: list[str] = []
        self.stages: list[list] = []  # [stage, seconds] in the order they ran
        self.under_way: list[str] = []  # for the page's timeline (two may overlap)
        self.warnings: list[str] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._flushed_at = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time what runs inside as stage ``name`` (a failing stage is timed too); the
        same name twice (a restart's two starts) adds up. A name with a dot is a part of
        the stage before the dot (``hooks.postCreateCommand``), not added to the total."""
        began = self._clock()
        with self._lock:
            self.under_way.append(name)
        self._flush_now_and_then()  # the page's timeline shows it under way
        try:
            yield
        finally:
            took = round(self._clock() - began, 3)
            with self._lock:
                self.under_way.remove(name)
                for entry in self.stages:
                    if entry[0] == name:
                        entry[1] = round(entry[1] + took, 3)
                        break
                else:
                    self.stages.append([name, took])

    def timing(self) -> str:
        """The stages in a line, for the end of the log (their sum, not the job's wall
        time: the wait for the worker and the bookkeeping between stages are not in it)."""
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.stages)
        total = sum(seconds for name, seconds in self.stages if "." not in name)
        return f"stages: {parts} ({total:.2f} s together)"

    def warn(self, text: str) -> None:
        """A warning of Berth's own: in the log, and in the page's warning box. A line a
        build or a hook prints is only ever log, whatever it says."""
        with self._lock:
            self.warnings.append(text)
        self(f"warning: {text}")

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line.rstrip("\n"))
        self._flush_now_and_then()

    def _flush_now_and_then(self) -> None:
        """At most twice a second: the page follows, the database is not flooded."""
        if time.monotonic() - self._flushed_at > 0.5:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            text = "\n".join(self.lines) + ("\n" if self.lines else "")
            done = {name for name, _ in self.stages}
            # A stage under way is written as [name, null]: the page shows it running.
            running = [[name, None] for name in dict.fromkeys(self.under_way) if name not in done]
            stages = json.dumps(self.stages + running)
            warnings = json.dumps(self.warnings)
            self._flushed_at = time.monotonic()
        Transition.update(log=text, stages=stages, warnings=warnings).where(
            Transition.id == self.transition.id
        ).execute()


@dataclass
class Context:
    runtime: Runtime
    settings: Settings

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def record_placement(runtime: Runtime, ws: Workspace, instance_id: str) -> None:
    """Write down where the started workspace is reached (its address, host, user and
    folder) and the engine's start time: the web tier and the SSH gateway read them
    here, and reconcile compares the start time."""
    found = runtime.placement(instance_id)
    ws.container_id = found.instance_id
    ws.engine_started_at = found.started_at
    ws.address = found.address
    ws.runtime_host = found.host
    ws.remote_user = found.remote_user
    ws.workspace_folder = found.folder
    ws.save(
        only=[
            Workspace.container_id,
            Workspace.engine_started_at,
            Workspace.address,
            Workspace.runtime_host,
            Workspace.remote_user,
            Workspace.workspace_folder,
        ]
    )


def record_environment(ws: Workspace, instance_id: str, session: dc.Session) -> None:
    """Write down the environment a person's processes get in this container: the
    userEnvProbe result with remoteEnv applied, as devcontainer exec and VS Code give
    theirs. SSH sessions, API execs and the IDE read it. Like the reference, the probe
    is made once per container: a start of the same container keeps what was found."""
    if not session.probed and ws.person_env:  # recorded for this very container
        return
    ws.remote_env = json.dumps({"instance": instance_id, "env": session.environment()})
    ws.save(only=[Workspace.remote_env])


def clear_placement(ws: Workspace) -> None:
    """A stopped or removed workspace has no address to reach."""
    if ws.address is not None:
        ws.address = None
        ws.save(only=[Workspace.address])


def source_dir(ctx: Context, ws: Workspace) -> Path:
    return ctx.data_dir / "workspaces" / str(ws.id) / ws.name


def _prepare_source(ctx: Context, ws: Workspace, log: JobLog) -> Path:
    folder = source_dir(ctx, ws)
    if folder.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not ws.repo_url:
        folder.mkdir()
        return folder
    log(f"cloning {ws.repo_url}" + (f" at {ws.repo_ref}" if ws.repo_ref else ""))
    try:
        auth = git.auth_for(ws.owner_id, ws.repo_url, ctx.data_dir)
        head = git.clone(ws.repo_url, ws.repo_ref, folder, ctx.settings.private_networks, auth=auth)
    except git.CloneError as exc:
        raise JobFailed(str(exc)) from None
    log(f"cloned: {head}" if head else "cloned")
    return folder


MAX_CHOICES = 20


def _offerable(paths: list[str]) -> list[str]:
    """The configs a hostile repository's names allow to offer: text the database and a
    page can hold and repo.config would take, at most MAX_CHOICES of them."""
    fine = []
    for path in sorted(paths):
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            continue  # a name that is no text
        if len(path) <= 255 and not any(ch in path for ch in "\\\0\n\r"):
            fine.append(path)
    return fine[:MAX_CHOICES]


def _load_config(
    ctx: Context, ws: Workspace, folder: Path, log: JobLog
) -> tuple[dc.DevcontainerConfig, dc.Approvals]:
    """The config to build and the approvals it runs with: a template's own config has
    its template's; a repository's own config has none, whatever template was named. A
    repository with several configs needs one chosen (``repo.config``): no silent pick."""
    if ws.repo_url and ws.repo_config:
        log(f"using the repository's {ws.repo_config}")
        return dc.load(folder, ws.repo_config, root=folder), dc.Approvals()
    found = dc.discover(folder) if ws.repo_url else []
    if len(found) > 1:
        choices = _offerable([str(path.relative_to(folder)) for path in found])
        ws.repo_choices = json.dumps(choices)
        ws.save(only=[Workspace.repo_choices])
        raise JobFailed(
            f"the repository has {len(found)} devcontainer configs ({', '.join(choices)}); "
            "choose one on the workspace's page (or PUT its repo config in the API)"
        )
    if found:
        log("using the repository's own devcontainer.json")
        return dc.load(folder, found[0], root=folder), dc.Approvals()
    if ws.template is None:
        raise JobFailed("the repository has no devcontainer.json and no template was chosen")
    try:
        path, root = templates.config_path(ws.template, ctx.data_dir, ctx.settings.private_networks)
        return dc.load(folder, path, root=root), templates.approvals(ws.template)
    except git.CloneError as exc:
        raise JobFailed(f"template {ws.template.name}: {exc}") from None


def prebuild_templates(ctx: Context, log) -> str:
    """Build (or find) the image of every built-in template, so the first workspace of
    each starts without a build; returns what was done."""
    import tempfile

    from app.models import Template

    done = []
    # Read first: a cursor held open across the builds would make the progress writes
    # meanwhile fail on SQLite ("database is locked").
    builtin = Template.select().where(Template.enabled & (Template.source_kind == "builtin"))
    for template in list(builtin):
        with tempfile.TemporaryDirectory(prefix="berth-prebuild-") as folder:
            path, root = templates.config_path(template, ctx.data_dir)
            plan = dc.plan(
                dc.load(folder, path, root=root),
                local_env={},
                approvals=templates.approvals(template),
                feature_cache=ctx.data_dir / "cache" / "features",
                private=ctx.settings.private_networks,
            )
            result = dc.build(
                plan,
                ctx.runtime,
                on_log=lambda line, name=template.name: log(f"{name}: {line}"),
                network=ctx.runtime.build_network(),
            )
            done.append(f"{template.name} {'ready' if result.cached else 'built'}")
    return "; ".join(done) or "no built-in templates"


def _with_remedy(ctx: Context, error: str) -> str:
    """A build error, and what to do when it is Berth's own base image that is missing."""
    if BASE_IMAGE not in error or ctx.runtime.image(BASE_IMAGE) is not None:
        return error
    return (
        f"the base image {BASE_IMAGE} is not on this Docker engine yet. Berth makes it "
        "when its worker starts (the base-image job on the admin page says how far it "
        "got); where no registry answers it needs mmdebstrap (`apt-get install "
        "mmdebstrap`, then restart Berth). `berth doctor` checks it. The engine said: " + error
    )


def _count_containers(ws: Workspace, spec) -> None:
    """A compose config runs a container per started service, each with the template's
    CPUs and memory: known only now, so the quotas are checked again before any is
    made, and the number kept for quotas and costs."""
    containers = 1 + (len(spec.compose.services) if spec.compose else 0)
    if containers == ws.containers:
        return
    if containers > ws.containers:
        try:
            quotas.check(ws.owner, ws, json.loads(ws.parameters), new=False, containers=containers)
        except quotas.QuotaExceeded as exc:
            raise JobFailed(str(exc)) from None
    ws.containers = containers
    ws.save(only=[Workspace.containers])


def _plan_and_build(ctx: Context, ws: Workspace, log: JobLog):
    with log.stage("source"):
        folder = _prepare_source(ctx, ws, log)
    with log.stage("config"):
        config, approvals = _load_config(ctx, ws, folder, log)
        plan = dc.plan(
            config,
            local_env={},
            approvals=approvals,
            feature_cache=ctx.data_dir / "cache" / "features",
            private=ctx.settings.private_networks,
        )
    for warning in plan.warnings:
        log.warn(warning)
    # RUN steps sit behind the same firewall as workspaces (app.runtime.docker.networks).
    with log.stage("build"):
        network = ctx.runtime.build_network()
        try:
            result = dc.build(plan, ctx.runtime, on_log=log, network=network)
        except dc.BuildError as exc:
            raise JobFailed(_with_remedy(ctx, str(exc))) from None
    ws.image = result.image
    ws.save(only=[Workspace.image])
    return plan, result, approvals


_USERS_BY_IMAGE: dict[str, dict[str, ImageUser]] = {}


def _image_users(ctx: Context, image_id: str) -> dict[str, ImageUser]:
    """An image's users; images are immutable, so each is read once per worker."""
    if image_id not in _USERS_BY_IMAGE:
        _USERS_BY_IMAGE[image_id] = image_users(ctx.runtime, image_id)
    return _USERS_BY_IMAGE[image_id]


def _ref(ctx: Context, ws: Workspace) -> WorkspaceRef:
    return WorkspaceRef(ctx.runtime.instance, ws.id, ws.owner.username, ws.name)


def _limits(ws: Workspace) -> Limits:
    resolved = templates.resolve_parameters(ws.template, json.loads(ws.parameters))
    return Limits(cpus=resolved.cpus, memory_mb=resolved.memory_mb, pids=resolved.pids)


def is_agent(ws: Workspace) -> bool:
    return bool(ws.template and ws.template.profile == "agent")


def _create_and_start(ctx: Context, ws: Workspace, log: JobLog, transition: Transition) -> None:
    """Build (or reuse) the image, create the container if missing, start it, set it up."""
    container = ctx.runtime.find(ws.id)
    if container is not None and container.outdated:
        log("recreating the container: it has a writable host folder at /run/berth (volumes stay)")
        ctx.runtime.discard(container.id)
        container = None
    fresh = container is None
    # Setting up again a container the engine started by itself (reconcile asks): it is
    # running all along, so its status and the clocks counting from it stay as they are.
    again = (
        not fresh
        and ws.status in (S.RUNNING, S.POOLED)
        and json.loads(transition.options or "{}").get("set_up_again")
    )
    # An existing container only needs its run spec (the build is a cache lookup then).
    if not again:
        states.move(ws, S.BUILDING if fresh else S.STARTING, transition)
    plan, result, approvals = _plan_and_build(ctx, ws, log)
    if fresh:
        states.move(ws, S.STARTING, transition)
    ref = _ref(ctx, ws)
    spec = dc.run_spec(
        plan,
        result,
        approvals=approvals,
        workspace_volume=ctx.runtime.volume_name(ref, "workspace"),
    )
    if fresh:
        _count_containers(ws, spec)
        user = _image_users(ctx, result.image_id).get(spec.remote_user) or ImageUser(0, 0, "/root")
        with log.stage("volumes"):
            seed = _prepare_volumes(
                ctx, ws, log, transition, ref, result.image_id, spec, plan, user
            )
        container = _create_and_seed(ctx, ws, ref, spec, user, seed, log)
        ws.container_id = container.id
        ws.save(only=[Workspace.container_id])
    # Warm-pool members wait, exec-ready, until an API create claims one (and its token
    # is made then, for its new owner).
    pooled = ws.owner.username == pool.POOL_USER
    set_up_before = bool(ws.person_env)
    early = not again and _running_once_started(ws, spec, transition, set_up_before, fresh)
    try:
        with log.stage("start"):
            ctx.runtime.start(container.id)
            record_placement(ctx.runtime, ws, container.id)
        if early:
            # The config's forwarded ports, as a client that sees it running asks for them.
            apps.sync_config_ports(ws, spec.forward_ports, spec.ports_attributes)
            states.move(ws, S.POOLED if pooled else S.RUNNING, transition)
            wakeup.tell_waiters(ctx.data_dir)  # an API create or start answers now
        with log.stage("hooks"):
            session = dc.Session(ctx.runtime, container.id, spec, log)
            dc.run_lifecycle(
                ctx.runtime,
                container.id,
                spec,
                on_log=log,
                session=session,
                phase=lambda hook: log.stage(f"hooks.{hook}"),
                set_up_before=set_up_before,
            )
            record_environment(ws, container.id, session)
            if early:
                wakeup.tell_waiters(ctx.data_dir)  # commands that came meanwhile go on
            if is_agent(ws) and not pooled:
                hand_token(ctx.runtime, ws, container.id, spec.remote_user, ctx.settings.secret_key)
    except (dc.LifecycleError, ProvisionError) as exc:
        # Keep volumes (they may hold work); drop the container so a retry starts clean.
        ctx.runtime.discard(container.id)
        clear_placement(ws)
        raise JobFailed(str(exc)) from None
    if not early:
        apps.sync_config_ports(ws, spec.forward_ports, spec.ports_attributes)
    # A new container of a person's workspace: their dotfiles, unless its home has them.
    if fresh and ws.owner.dotfiles_url and not pooled and not is_agent(ws):
        with log.stage("dotfiles"):
            dotfiles.install(
                ctx.runtime,
                container.id,
                ws.owner.dotfiles_url,
                spec.remote_user,
                ws.person_env,
                log,
                scratch=source_dir(ctx, ws).parent,
                allowed=ctx.settings.private_networks,
                auth_of=lambda url: git.auth_for(ws.owner_id, url, ctx.data_dir),
                warn=log.warn,
            )
    if ctx.runtime.tools and not is_agent(ws):
        # code-server itself starts on the first open of the IDE (ide_sessions); a start
        # asked for by opening it does not wait for another.
        with log.stage("ide"):
            ide.prepare(
                ctx.runtime,
                container.id,
                spec.remote_user,
                spec.vscode,
                log,
                ws.person_env,
                warn=log.warn,
            )
            if transition.cause == "ide":
                ide_sessions.opened(ctx.settings, ws)
    if not again and not early:
        states.move(ws, S.POOLED if pooled else S.RUNNING, transition)
        wakeup.tell_waiters(ctx.data_dir)


def _running_once_started(
    ws: Workspace, spec, transition: Transition, set_up_before: bool, fresh: bool
) -> bool:
    """Whether a start has nothing left that a person's first command could need once the
    container runs: no lifecycle phase has a command, no VS Code settings or extensions
    are to be put in, no token is to be handed to an agent, and no IDE open waits for it.
    What is left follows while it counts as running: the postStart marker; for a new
    container (not a warm-pool member, and no dotfiles to put in) also the patch of
    /etc/environment and the probe of the user's environment, which a person's command,
    SSH session or IDE in that moment waits for (service.once_set_up)."""
    new_and_plain = (
        fresh
        and transition.kind == Kind.CREATE
        and not ws.owner.dotfiles_url
        and ws.owner.username != pool.POOL_USER
    )
    return (
        (set_up_before or new_and_plain)
        and not any(spec.hooks.values())
        and not (spec.vscode.get("settings") or spec.vscode.get("extensions"))
        and not is_agent(ws)
        and transition.cause != "ide"
    )


def _create_and_seed(ctx, ws, ref, spec, user, seed, log):
    """The container, then (if ``seed``) the workspace volume filled through it before
    its first start. When the seeding fails, the container goes and the volume this job
    made for it, so a retry seeds again instead of starting on an unseeded volume."""
    with log.stage("create"):
        container = ctx.runtime.create(
            ref,
            spec,
            _limits(ws),
            user.home,
            agent=is_agent(ws),
            owner=(user.uid, user.gid),
            egress_port=ctx.settings.egress_port if egress.controlled(ws) else None,
            extra_env=_sandbox_env(ctx, ws) if is_agent(ws) else None,
        )
    if seed is not None:
        try:
            with log.stage("seed"):
                seed(container.id)
        except Exception:
            _undo_seeding(ctx, ref, container)
            raise
    return container


def _undo_seeding(ctx, ref, container) -> None:
    """Best effort: the seeding's (or the create's) own error is the one to report."""
    try:
        if container is not None:
            ctx.runtime.discard(container.id)
        ctx.runtime.discard_volume(ref, "workspace")
    except ProvisionError as exc:
        logger.warning("undoing a failed seeding of %s: %s", ref.name, exc)


def _prepare_volumes(
    ctx, ws, log, transition, ref, image_id, spec, plan, user
) -> Callable[[str], None] | None:
    """A new container's volumes: restored from a backup when asked; else, unless the
    workspace volume exists, the seeding of it (with the repository, for a repository's
    workspace), to run through the container once it is made."""
    restore_from = json.loads(transition.options or "{}").get("restore")
    has_volumes = any(
        v.name == ctx.runtime.volume_name(ref, "workspace") for v in ctx.runtime.volumes(ws.id)
    )
    if restore_from and not has_volumes:
        try:
            source = volume_backups.find(ctx.settings, restore_from)
            roles = volume_backups.restore(ctx.runtime, ref, image_id, source)
        except BackupError as exc:
            raise JobFailed(str(exc)) from None
        log(f"restored the volumes {', '.join(roles)} from the backup {source.id}")
    elif not has_volumes:
        if ws.repo_url:
            log(f"copying the repository into {spec.workspace_folder}")
        source = str(plan.config.workspace) if ws.repo_url else None
        return lambda container_id: ctx.runtime.seed_workspace_volume(
            ref, container_id, user.uid, user.gid, source
        )
    return None


def _stop(ctx: Context, ws: Workspace, log: JobLog, transition: Transition) -> None:
    states.move(ws, S.STOPPING, transition, message=transition.reason)
    container = ctx.runtime.find(ws.id)
    if container is not None:
        with log.stage("stop"):
            ctx.runtime.stop(container.id, STOP_GRACE_SECONDS)
    clear_placement(ws)
    states.move(ws, S.STOPPED, transition)


def _discard_image(ctx: Context, ws: Workspace, image: str) -> None:
    """Remove an image no workspace uses any more. A template's own image stays: the next
    workspace from that template then starts without a build."""
    if ws.repo_url:
        ctx.runtime.remove_image_if_unused(image, _protected_images())


def _protected_images() -> set[str]:
    live = Workspace.select(Workspace.image).where(Workspace.status != S.DELETED)
    return {w.image for w in live if w.image}


def _rebuild(ctx: Context, ws: Workspace, log: JobLog, transition: Transition) -> None:
    old_image = ws.image
    states.move(ws, S.BUILDING, transition)
    _plan_and_build(ctx, ws, log)  # fails before anything is removed if the build fails
    container = ctx.runtime.find(ws.id)
    if container is not None:
        with log.stage("stop"):
            ctx.runtime.stop(container.id, STOP_GRACE_SECONDS)
            ctx.runtime.discard(container.id)
        clear_placement(ws)
    _create_and_start(ctx, ws, log, transition)
    if old_image and old_image != ws.image:
        _discard_image(ctx, ws, old_image)


def hand_token(
    runtime: Runtime, ws: Workspace, container_id: str, user: str, secret_key: str
) -> None:
    """Make the sandbox a fresh token and write it to /run/berth/token inside it."""
    token = sandboxes.issue(ws, secret_key)
    runtime.write_file(container_id, sandboxes.TOKEN_PATH, (token + "\n").encode(), user)


def _sandbox_env(ctx: Context, ws: Workspace) -> dict[str, str]:
    """What the agent inside needs to talk to Berth about its own sandbox (its token is
    the file /run/berth/token and BERTH_TOKEN in API execs: app.workspaces.sandboxes)."""
    return {
        "BERTH_URL": egress_directory.sandbox_berth_url(ctx.settings),
        "BERTH_WORKSPACE_ID": str(ws.id),
        "BERTH_TOKEN_FILE": sandboxes.TOKEN_PATH,
    }


def _delete(ctx: Context, ws: Workspace, log: JobLog, transition: Transition) -> None:
    options = json.loads(transition.options or "{}")
    keep = bool(options.get("keep_volumes"))
    if options.get("backup_first"):
        try:
            taken = _backup(ctx, ws, log)
        except (BackupError, ProvisionError) as exc:
            reason = f"not deleted: the backup failed: {exc}"
            states.move(ws, S(ws.status), transition, message=reason)
            raise JobFailed(f"the backup before deleting failed: {exc}", keep_status=True) from None
        log(f"volumes backed up as {taken.id}")
    states.move(ws, S.DELETING, transition, message=transition.reason)
    ws.keep_volumes = keep
    ws.save(only=[Workspace.keep_volumes])
    with log.stage("remove"):
        ctx.runtime.remove_workspace(ws.id, keep_volumes=keep)
    clear_placement(ws)
    shutil.rmtree(source_dir(ctx, ws).parent, ignore_errors=True)
    states.move(ws, S.DELETED, transition, message="volumes kept" if keep else None)
    sandboxes.revoke(ws)
    if ws.image:
        _discard_image(ctx, ws, ws.image)


def _backup(ctx: Context, ws: Workspace, log: JobLog) -> volume_backups.Backup:
    """Archive the workspace's volumes (a running workspace keeps running)."""
    log("backing up the workspace's volumes")
    with log.stage("backup"):
        return volume_backups.backup(
            ctx.settings,
            ctx.runtime,
            _ref(ctx, ws),
            ws.image or BASE_IMAGE,
            {
                "workspace_id": ws.id,
                "template": ws.template.name if ws.template else None,
                "repo": ws.repo,
                "parameters": json.loads(ws.parameters),
                # What others may have left in these files goes with them on restore.
                "credentials_off": ws.credentials_off,
            },
        )


def run(ctx: Context, transition: Transition) -> None:
    """Carry out one transition; record its outcome, its log and the workspace's state."""
    ws = Workspace.get_by_id(transition.workspace_id)
    log = JobLog(transition)
    log(f"{transition.kind} requested by {transition.actor or transition.cause}")
    if transition.reason:
        log(f"reason: {transition.reason}")
    keep_status = False
    try:
        if ws.status == S.DELETED:
            raise JobFailed("the workspace was deleted before this job ran")
        if transition.kind in (Kind.CREATE, Kind.START):
            _create_and_start(ctx, ws, log, transition)
        elif transition.kind == Kind.STOP:
            _stop(ctx, ws, log, transition)
        elif transition.kind == Kind.RESTART:
            _stop(ctx, ws, log, transition)
            _create_and_start(ctx, ws, log, transition)
        elif transition.kind == Kind.REBUILD:
            _rebuild(ctx, ws, log, transition)
        elif transition.kind == Kind.BACKUP:
            try:
                taken = _backup(ctx, ws, log)
            except BackupError as exc:
                raise JobFailed(str(exc), keep_status=True) from None
            log(f"backup {taken.id} written ({taken.size} bytes)")
        elif transition.kind == Kind.DELETE:
            _delete(ctx, ws, log, transition)
        outcome, error = JobStatus.SUCCEEDED, None
    except JobFailed as exc:
        outcome, error, keep_status = JobStatus.FAILED, str(exc), exc.keep_status
    except (dc.DevcontainerError, ProvisionError, templates.ParameterError) as exc:
        outcome, error = JobStatus.FAILED, str(exc)
    except states.IllegalMove as exc:  # a bug; the job fails with it, said plainly
        logger.exception("job %s (%s)", transition.id, transition.kind)
        outcome, error = JobStatus.FAILED, f"Berth could not carry this out: {exc}"
    except Exception as exc:  # noqa: BLE001  (a bug, too: the workspace must not stay half-way)
        logger.exception("job %s (%s) crashed", transition.id, transition.kind)
        outcome, error = (
            JobStatus.FAILED,
            f"Berth could not carry this out (an internal error: {type(exc).__name__}); "
            "the worker's log has the details",
        )
    if error:
        log(f"error: {error}")
        if ws.status != S.DELETED and not keep_status:
            states.move(ws, S.FAILED, transition, error=error)
    else:
        log(f"{transition.kind} done")
    if log.stages:
        log(log.timing())
    log.flush()
    Transition.update(status=outcome, error=error, finished_at=utcnow()).where(
        Transition.id == transition.id
    ).execute()
    audit.record(
        f"workspace.{transition.kind}",
        actor=transition.actor,
        target=f"workspace:{ws.owner.username}.{ws.name}",
        outcome="success" if outcome == JobStatus.SUCCEEDED else "failure",
        cause=transition.cause,
        transition=transition.id,
        workspace_id=ws.id,
        error=error,
    )
