"""``berth worker``: the single writer to the runtime (app.runtime).

It takes jobs (transitions) as soon as the web app records them, one at a time per
workspace and several workspaces in parallel, and reconciles the database with Docker
on start and every 30 seconds. A lock file (and, on PostgreSQL, an advisory lock) makes
sure only one worker runs per instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import peewee
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from app import audit, platform, states
from app import runtime as runtimes
from app.config import Settings
from app.db import database
from app.devcontainer.errors import DevcontainerError
from app.health import heartbeat_path
from app.messages import first_line
from app.models import Transition, Workspace, utcnow
from app.runtime import Instance, ProvisionError, Runtime
from app.runtime.layout import BASE_IMAGE, CODE_SERVER_VERSION
from app.scheduler import Book, register, run_recorded
from app.states import Cause, Kind
from app.states import JobStatus as J
from app.states import Status as S
from app.workspaces import (
    anomalies,
    ide_sessions,
    lifecycle,
    pool,
    recordings,
    service,
    templates,
    wakeup,
)
from app.workspaces import (
    scheduled as jobs,
)

log = logging.getLogger("berth.worker")
POOL_SECONDS = 5  # how soon a claimed warm-pool member is replaced
ANOMALY_SECONDS = 60
SAFETY_NET_SECONDS = 5.0
# Restarts by the engine (its restart policy) since Berth last started a container that
# make it a crash loop: stopped, and the workspace marked stopped with the exit code.
CRASH_LOOP = 3
# How long a running workspace's container must stay exited (stopped outside Berth, not
# by a job) before it is marked stopped: an engine that is shutting down stops its
# containers while it still answers, and starts them again when it is back.
EXITED_GRACE_SECONDS = 30.0
TOOLS_RETRY_SECONDS = (
    30  # doubling up to ten minutes  # a lost wake-up delays a job by at most this much
)
_PG_WORKER_LOCK = 0x6265727477  # "bertw"
POISON_ATTEMPTS = 2  # a job running when the worker died this often is failed
# Workspace networks made ahead for the next ids, while no job runs (lifecycle's create
# then finds its network made): enough for a person's next create or two.
NETWORKS_AHEAD = 2
NETWORKS_IDLE_SECONDS = 1.0  # with no job for this long after a create


class AlreadyRunning(Exception):
    pass


def _highest_workspace_id() -> int:
    """Deleted workspaces' rows stay, so the next workspace's id is the one after."""
    return Workspace.select(peewee.fn.MAX(Workspace.id)).scalar() or 0


class InstanceLock:
    """Held for the worker's lifetime; a second worker of the same instance cannot get it."""

    def __init__(self, settings: Settings):
        self.path = settings.data_dir / "worker.lock"
        self.handle = self.path.open("a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise AlreadyRunning(
                f"another berth worker (pid {holder}) already runs for {settings.data_dir}"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        self.pg_connection = None
        if not settings.is_sqlite:
            # Workers with different data dirs may still share one PostgreSQL database.
            from app.db import make_database

            self.pg_connection = make_database(settings.database_url)
            self.pg_connection.connect()
            got = self.pg_connection.execute_sql(
                "SELECT pg_try_advisory_lock(%s)", (_PG_WORKER_LOCK,)
            ).fetchone()[0]
            if not got:
                self.release()
                raise AlreadyRunning("another berth worker holds this database's worker lock")

    def release(self) -> None:
        if self.pg_connection is not None:
            self.pg_connection.close()
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


class FirewallError(Exception):
    """The host firewall's rules for workspaces could not be put in place."""


class Worker:
    def __init__(self, settings: Settings, runtime: Runtime | None = None, parallel: int = 4):
        self.settings = settings
        self.runtime = runtime or runtimes.connect(
            settings,
            timeout=600,
            agent_socket_root=settings.agent_socket_root,
            helper_dir=settings.helper_dir,
            tools=True,
        )
        self.ctx = lifecycle.Context(self.runtime, settings)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="job")
        self.busy: set[int] = set()
        self.busy_lock = threading.Lock()
        self.stopping = threading.Event()
        self.anomalies = anomalies.Detector()
        self.clock = time.monotonic  # tests move it on
        # Running workspaces whose container was seen exited: when first seen, and the
        # container's start then. Entries go as soon as it runs again or is marked.
        self.exited_since: dict[int, tuple[float, str | None]] = {}
        self.last_job_ended = self.clock()
        self.networks_wanted = True  # ahead of the first create too

    # --- jobs -------------------------------------------------------------------------

    def dispatch(self) -> int:
        """Start every pending job whose workspace is not busy; return how many started."""
        started = 0
        with database.connection_context():
            pending = list(
                Transition.select().where(Transition.status == J.PENDING).order_by(Transition.id)
            )
            for job in pending:
                with self.busy_lock:
                    if job.workspace_id in self.busy:
                        continue
                    claimed = (
                        Transition.update(
                            status=J.RUNNING,
                            started_at=utcnow(),
                            attempts=Transition.attempts + 1,
                        )
                        .where((Transition.id == job.id) & (Transition.status == J.PENDING))
                        .execute()
                    )
                    if not claimed:
                        continue
                    self.busy.add(job.workspace_id)
                self.pool.submit(self._run, job.id)
                started += 1
        return started

    def _run(self, transition_id: int) -> None:
        with database.connection_context():
            job = Transition.get_by_id(transition_id)
            try:
                lifecycle.run(self.ctx, job)
            except Exception:
                log.exception("job %s (%s) crashed", job.id, job.kind)
                Transition.update(
                    status=J.FAILED,
                    error="internal error; see the worker log",
                    finished_at=utcnow(),
                ).where(Transition.id == job.id).execute()
            finally:
                with self.busy_lock:
                    self.busy.discard(job.workspace_id)
                    self.last_job_ended = self.clock()
                    if job.kind == Kind.CREATE:
                        self.networks_wanted = True
        wakeup.notify(self.settings.data_dir)  # the next job of this workspace may wait
        wakeup.tell_waiters(self.settings.data_dir)  # requests waiting for this one

    def _keep_networks_ahead(self) -> None:
        """Thread: after a create, once no job has run for a while, the networks of the
        next workspaces (a person's next create then finds its network made)."""
        while not self.stopping.wait(NETWORKS_IDLE_SECONDS):
            if not self.networks_due():
                continue
            try:
                self.make_networks_ahead()
            except Exception:  # noqa: BLE001  (the database or the engine away: next time)
                log.exception("networks for the next workspaces")
                with self.busy_lock:
                    self.networks_wanted = True

    def networks_due(self) -> bool:
        """Whether to make them now: wanted (after a create, and when the worker starts)
        and no job for NETWORKS_IDLE_SECONDS. A yes takes the wish."""
        with self.busy_lock:
            idle = not self.busy and self.clock() - self.last_job_ended >= NETWORKS_IDLE_SECONDS
            due = self.networks_wanted and idle
            if due:
                self.networks_wanted = False
            return due

    def make_networks_ahead(self) -> list[str]:
        """The networks of the next workspaces, each made unless a job runs (the engine
        has enough to do then, and a burst of creates makes its own). Returns their
        names."""
        made = []
        for ahead in range(1, 1 + NETWORKS_AHEAD):
            with self.busy_lock:
                if self.busy:  # a job (or reconcile) came: later, once it is quiet again
                    self.networks_wanted = True
                    break
            with database.connection_context():
                top = _highest_workspace_id()  # again for each: a create may have come
            try:
                made += self.runtime.make_networks_ahead([top + ahead])
            except ProvisionError as exc:
                log.warning("networks for the next workspaces: %s", first_line(exc))
                break
        if made:
            log.info("made ahead for the next workspaces: %s", ", ".join(made))
        return made

    # --- reconciliation ------------------------------------------------------------------

    def recover_interrupted(self) -> int:
        """Jobs a crashed worker left running go back to pending (every step is
        idempotent), unless the worker already died twice while running one: that job is
        what kills it, so it is failed with that reason instead of tried forever."""
        with database.connection_context():
            for job in list(
                Transition.select().where(
                    (Transition.status == J.RUNNING) & (Transition.attempts >= POISON_ATTEMPTS)
                )
            ):
                self._fail_poison(job)
            return (
                Transition.update(status=J.PENDING, started_at=None)
                .where(Transition.status == J.RUNNING)
                .execute()
            )

    def _fail_poison(self, job: Transition) -> None:
        error = (
            f"the worker stopped {job.attempts} times while carrying out this {job.kind} "
            "(a crash, or the machine running out of memory or disk); it is not tried again. "
            "The job's log shows how far it got; try again once the cause is fixed."
        )
        log.error("job %s (%s of workspace %s): %s", job.id, job.kind, job.workspace_id, error)
        ws = Workspace.get_by_id(job.workspace_id)
        Transition.update(status=J.FAILED, error=error, finished_at=utcnow()).where(
            Transition.id == job.id
        ).execute()
        if ws.status != S.DELETED:
            states.move(ws, S.FAILED, job, error=error)
        audit.record(
            f"workspace.{job.kind}",
            actor=job.actor,
            target=f"workspace:{ws.owner.username}.{ws.name}",
            outcome="failure",
            cause=job.cause,
            transition=job.id,
            workspace_id=ws.id,
            error=error,
        )

    def keep_in_agreement(self) -> str:
        """The scheduled reconcile: the host firewall's rules for workspaces (put back if
        an engine or host restart, or a flush, lost them), then reconcile(). A firewall
        that cannot be put in place fails the job (admins see it), after reconcile."""
        try:
            self.runtime.egress_gateway()  # the egress network: the gateway waits for it
            firewall = self.runtime.ensure_isolation_rules(self.settings.egress_port)
        except ProvisionError as exc:
            firewall = f"could not check the firewall rules: {first_line(exc)}"
        lines = self.reconcile()
        if firewall.startswith(("could not", "iptables is not installed")):
            raise FirewallError(f"firewall: {firewall}")
        if firewall != "firewall rules already in place":
            log.info("firewall: %s", firewall)
            lines.insert(0, f"firewall: {firewall}")
        return "; ".join(lines) or "in agreement"

    def reconcile(self) -> list[str]:
        """Bring the database and Docker into agreement; return what was repaired. Each
        workspace is looked at while no job can start for it (it counts as busy), and only
        if no job was in flight when it was claimed: reconcile never acts inside a job's
        window (a rebuild between removing and recreating its container, say)."""
        repaired = []
        with database.connection_context():
            top = _highest_workspace_id()  # before the inventory: a create may come between
            _, resources = self.runtime.inventory()
            for found in resources:
                if found.kind == "volume" or found.role in ("control", "egress", "build"):
                    continue  # the instance's own: tunnels, sandboxes' egress, builds
                if found.kind == "network" and found.owner is None and found.workspace_id > top:
                    continue  # made ahead for the next workspaces
                with self._claimed(found.workspace_id) as idle:
                    if idle and not self._exists(found.workspace_id) and self._removed(found):
                        what = "container" if found.kind == "instance" else found.kind
                        repaired.append(f"removed orphaned {what} {found.name}")
            deleted = {
                w.id
                for w in Workspace.select().where(
                    (Workspace.status == S.DELETED) & ~Workspace.keep_volumes
                )
            }
            for found in resources:
                # Never a volume whose workspace row is unknown.
                gone = found.kind == "volume" and found.workspace_id in deleted
                if gone and self._removed(found):
                    repaired.append(f"removed the volume {found.name} of a deleted workspace")
            live = [w.id for w in Workspace.select(Workspace.id).where(
                Workspace.status != S.DELETED
            )]  # fmt: skip
            for gone in set(self.exited_since) - set(live):
                del self.exited_since[gone]
            for ws_id in live:
                with self._claimed(ws_id) as idle:
                    ws = Workspace.get_or_none(Workspace.id == ws_id)
                    if ws is None or ws.status == S.DELETED:
                        continue
                    try:
                        if idle:
                            repaired += self._reconcile_one(ws)
                        else:
                            self._forget_a_moved_address(ws)
                    except (service.WorkspaceError, ProvisionError) as exc:
                        # One workspace's trouble is logged; the others are still looked at.
                        reason = getattr(exc, "message", None) or first_line(exc)
                        log.warning("reconcile: %s: %s", ws.name, reason)
                    except Exception:  # noqa: BLE001  (a bug with one must not stop the rest)
                        log.exception("reconcile: %s could not be looked at", ws.name)
        for line in repaired:
            log.info("reconcile: %s", line)
        if repaired:
            wakeup.notify(self.settings.data_dir)  # jobs it asked for while holding them
        return repaired

    def _removed(self, found) -> bool:
        """Remove ``found``; an engine that refuses (a network in use) is logged, and the
        other resources are still looked at."""
        try:
            self.runtime.remove(found)
        except ProvisionError as exc:
            log.warning("reconcile: %s %s: %s", found.kind, found.name, first_line(exc))
            return False
        return True

    @contextlib.contextmanager
    def _claimed(self, ws_id: int):
        """Hold ``ws_id`` as busy (no job starts for it meanwhile); yield whether it was
        idle: not busy here, and no job pending or running for it in the database."""
        with self.busy_lock:
            taken = ws_id not in self.busy
            self.busy.add(ws_id)
        if not taken:
            yield False
            return
        try:
            in_flight = (
                Transition.select()
                .where((Transition.workspace == ws_id) & Transition.status.in_(states.ACTIVE_JOB))
                .exists()
            )
            yield not in_flight
        finally:
            with self.busy_lock:
                self.busy.discard(ws_id)

    @staticmethod
    def _exists(ws_id: int) -> bool:
        return (
            Workspace.select()
            .where((Workspace.id == ws_id) & (Workspace.status != S.DELETED))
            .exists()
        )

    def _reconcile_one(self, ws: Workspace) -> list[str]:
        container = self.runtime.find(ws.id)
        code = container.exit_code if container else None
        exited = f"the container stopped by itself (exit code {code})"
        if container is not None and container.status == "restarting":
            restarts = container.restart_count
            if restarts < CRASH_LOOP:
                return []  # the engine is bringing it back; look again next time
            # Its main process keeps exiting and the engine keeps starting it again.
            self.runtime.stop(container.id)
            exited = (
                f"its main process kept exiting (exit code {container.exit_code}; the "
                f"engine started it {restarts} times); it was stopped"
            )
            container = self.runtime.poll(container.id)
            self.exited_since.pop(ws.id, None)
        elif (
            ws.status in (S.RUNNING, S.POOLED)
            and container is not None
            and not self._exited_long(ws, container)
        ):
            return []  # maybe an engine shutting down; look again next time
        running = container is not None and container.running
        if running or ws.status not in (S.RUNNING, S.POOLED):
            self.exited_since.pop(ws.id, None)
        if ws.status == S.RUNNING and container is None:
            states.move(
                ws,
                S.FAILED,
                None,
                error="the container disappeared "
                "(removed outside Berth); start the workspace to recreate it",
            )
            return [f"{ws.name}: container vanished, marked failed"]
        if ws.status == S.RUNNING and not running:
            self.exited_since.pop(ws.id, None)
            lifecycle.clear_placement(ws)
            states.move(ws, S.STOPPED, None, message=exited)
            return [f"{ws.name}: container had stopped, marked stopped"]
        if ws.status in (S.RUNNING, S.POOLED) and running:
            return self._started_by_the_engine(ws, container)
        if ws.status in states.TRANSITIONAL:
            # A transitional state with no job behind it: a crash ended the job for good.
            target = S.RUNNING if running else (S.STOPPED if container else S.FAILED)
            states.move(
                ws,
                target,
                None,
                message=f"was {ws.status} with no job running",
                error=None
                if target != S.FAILED
                else f"interrupted while {ws.status}; start or delete it",
            )
            return [f"{ws.name}: left {ws.status}, now {target}"]
        if ws.status == S.POOLED and not running:
            # A warm-pool member that lost its container is of no use: failed, it is
            # cleaned up like any failed sandbox, and the pool is refilled.
            self.exited_since.pop(ws.id, None)
            states.move(ws, S.FAILED, None, error="the pooled container is gone")
            return [f"{ws.name}: pooled container gone, marked failed"]
        if ws.status == S.STOPPED and running:
            # Started outside Berth: what Berth recorded wins (quotas, idle and runtime
            # limits count only what Berth started).
            self.runtime.stop(container.id, lifecycle.STOP_GRACE_SECONDS)
            return [f"{ws.name}: its container was started outside Berth; stopped again"]
        return []

    def _forget_a_moved_address(self, ws: Workspace) -> None:
        """A workspace a job is busy with (a backup, say) is not reconciled, but an
        address its container no longer has (the engine started it again) is not used
        meanwhile: forgotten unless the job has just recorded a new start."""
        if ws.address is None:
            return
        container = self.runtime.find(ws.id)
        if container is not None and container.started_at == ws.engine_started_at:
            return
        Workspace.update(address=None).where(
            (Workspace.id == ws.id) & (Workspace.engine_started_at == ws.engine_started_at)
        ).execute()

    def _exited_long(self, ws: Workspace, container: Instance) -> bool:
        """Whether the container of running ``ws`` has been exited, the same start, for
        EXITED_GRACE_SECONDS (always True while it runs: nothing to wait for)."""
        if container.running:
            return True
        started = container.started_at
        first, seen_start = self.exited_since.setdefault(ws.id, (self.clock(), started))
        if seen_start != started:
            self.exited_since[ws.id] = (self.clock(), started)
            return False
        return self.clock() - first >= EXITED_GRACE_SECONDS

    def _started_by_the_engine(self, ws: Workspace, container: Instance) -> list[str]:
        """A running workspace whose container the engine started again by itself (an
        engine restart, a host reboot, its main process exiting): what Berth set up at
        start went with the old processes and tmpfs, so a start job sets it up again (the
        IDE, a sandbox's token, postStartCommand). Told apart by the engine's own start
        time, compared as written: no clocks."""
        self.runtime.adopt(container.id)
        started = container.started_at
        if ws.engine_started_at is None or started is None or ws.runtime_host is None:
            # Started by a Berth that did not record it (or where it is reached) yet:
            # this start is Berth's.
            lifecycle.record_placement(self.runtime, ws, container.id)
            return []
        if started == ws.engine_started_at:
            return []
        # Its address may have changed with the restart (on the shared egress network,
        # to one another sandbox had): none is used until the start job records it again.
        lifecycle.clear_placement(ws)
        service.request(
            ws,
            Kind.START,
            cause=Cause.SCHEDULE,
            actor="reconcile",
            reason="the engine started the container again by itself (an engine restart?); "
            "setting it up as after any start",
            options={"set_up_again": True},
            data_dir=self.settings.data_dir,
            allowed_from=(S.RUNNING, S.POOLED),
        )
        return [f"{ws.name}: started again by the engine, set up again"]

    # --- what the first workspace needs, made on first use ------------------------------

    def prepare(self) -> None:
        """Make what workspaces need before the first one asks (each step recorded as a
        scheduled job, its latest progress line on the dashboard, retried with back-off
        until it works): the base image, the engine's control image (tunnels and ending
        commands where the engine's processes are not visible), the built-in templates'
        images, the IDE's tools bundle. A step that fails does not hold up the others."""
        steps = {
            "base-image": self._base_image,
            "control-image": self._control_image,
            "templates": lambda: lifecycle.prebuild_templates(
                self.ctx, platform.Progress("templates", log)
            ),
            "tools": self._build_tools,
        }
        assert tuple(steps) == tuple(name for name, _ in platform.PREPARATION)
        with database.connection_context():
            for name in steps:
                register(name, "when the worker starts, retried until it succeeds")
        delay = TOOLS_RETRY_SECONDS
        pending = list(steps)
        if self._tools_already_there():
            # Imported or built before: a lookup, so it need not wait for the templates.
            pending.insert(0, pending.pop(pending.index("tools")))
        while pending and not self.stopping.is_set():
            for name in list(pending):
                with database.connection_context():
                    if run_recorded(name, steps[name], explain=self.explain) is not None:
                        pending.remove(name)
            if pending:
                # A missing package, a network failure may be fixed meanwhile.
                log.info("%s: trying again in %d s", ", ".join(pending), delay)
                if self.stopping.wait(delay):
                    return
                delay = min(delay * 2, 600)

    def _tools_already_there(self) -> bool:
        try:
            return self.runtime.tools_ready()
        except ProvisionError:
            return False  # no base image yet, say: the step itself will tell

    def _base_image(self) -> str:
        image = self.runtime.ensure_base_image(platform.Progress("base-image", log))
        return f"{BASE_IMAGE} ({image[:19]})"

    def _control_image(self) -> str:
        return self.runtime.ensure_control_image(platform.Progress("control-image", log))

    def _build_tools(self) -> str:
        self.runtime.ensure_tools(
            platform.Progress("tools", log), engine_dir=self.settings.tools_dir
        )
        # Workspaces that started meanwhile get their IDE on its next open (ide_sessions).
        log.info("the browser IDE's tools are ready (code-server %s)", CODE_SERVER_VERSION)
        return f"code-server {CODE_SERVER_VERSION} ready"

    # --- main loop ----------------------------------------------------------------------

    def _pool_create(self, owner, name: str, template_name: str) -> None:
        service.create(
            owner,
            name,
            template_name=template_name,
            cause="schedule",
            actor="pool",
            data_dir=self.settings.data_dir,
        )

    def explain(self, exc: BaseException) -> str | None:
        """One line for a scheduled job's failure whose cause is known (no traceback)."""
        if isinstance(exc, FirewallError | DevcontainerError | ProvisionError):
            return str(exc)
        return runtimes.describe_failure(exc, self.settings)

    def schedule(self) -> Book:
        settings = self.settings
        book = Book(self.explain)
        book.add(
            "reconcile",
            self.keep_in_agreement,
            IntervalTrigger(seconds=settings.reconcile_interval),
            f"every {settings.reconcile_interval}s",
        )
        book.add(
            "lifecycle",
            lambda: jobs.sweep(settings, self.runtime),
            IntervalTrigger(seconds=settings.lifecycle_interval),
            f"every {settings.lifecycle_interval}s",
        )
        book.add(
            "ide-idle",
            lambda: ide_sessions.stop_idle(self.runtime),
            IntervalTrigger(seconds=settings.lifecycle_interval),
            f"every {settings.lifecycle_interval}s",
        )
        book.add(
            "backup",
            lambda: jobs.nightly_backup(settings),
            CronTrigger.from_crontab(settings.backup_schedule, timezone="UTC"),
            f"cron {settings.backup_schedule} (UTC)",
        )
        book.add(
            "budgets",
            lambda: jobs.enforce_budgets(settings),
            IntervalTrigger(seconds=max(settings.lifecycle_interval, 60)),
            f"every {max(settings.lifecycle_interval, 60)}s",
        )
        book.add(
            "recordings",
            lambda: f"pruned {recordings.prune(settings.recording_retention_days)} recordings",
            CronTrigger.from_crontab("40 3 * * *", timezone="UTC"),
            f"daily 03:40 UTC, keeping {settings.recording_retention_days} days",
        )
        book.add(
            "anomalies",
            lambda: "; ".join(self.anomalies.run(settings, self.runtime)) or "none",
            IntervalTrigger(seconds=ANOMALY_SECONDS),
            f"every {ANOMALY_SECONDS}s",
        )
        book.add(
            "pool",
            lambda: "; ".join(pool.refill(settings.data_dir, self._pool_create)) or "pools full",
            IntervalTrigger(seconds=POOL_SECONDS),
            f"every {POOL_SECONDS}s",
        )
        if settings.audit_retention_days:
            book.add(
                "audit-prune",
                lambda: f"pruned {audit.prune(settings.audit_retention_days)} records",
                CronTrigger.from_crontab("30 3 * * *", timezone="UTC"),
                f"daily 03:30 UTC, keeping {settings.audit_retention_days} days",
            )
        return book

    def run(self) -> None:
        listener = wakeup.Listener(self.settings.data_dir)
        with database.connection_context():
            templates.sync_builtin()
        recovered = self.recover_interrupted()
        if recovered:
            log.info("%d interrupted job(s) will run again", recovered)
        with database.connection_context():
            register("reconcile", f"every {self.settings.reconcile_interval}s")
            run_recorded("reconcile", self.keep_in_agreement, explain=self.explain)
        book = self.schedule()
        book.start()
        threading.Thread(target=self._keep_networks_ahead, name="networks", daemon=True).start()
        threading.Thread(target=self.prepare, name="prepare", daemon=True).start()
        log.info("worker ready (data in %s)", self.settings.data_dir)
        heartbeat = heartbeat_path(self.settings)
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        try:
            while not self.stopping.is_set():
                self.dispatch()
                heartbeat.touch()  # `berth health worker` reads its age
                listener.wait(SAFETY_NET_SECONDS)
        finally:
            book.shutdown()
            self.pool.shutdown(wait=True, cancel_futures=False)
            listener.close()
