"""The SSH gateway server: authentication by registered public key, the mapping from a
login name to a workspace, and one paramiko transport per client connection.

``ssh -p 2222 <workspace>@host`` reaches the caller's own workspace;
``<owner>.<workspace>@host`` another's, for those allowed to see it (admins). Every
refusal looks the same to the client; the reason goes to the log.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import paramiko

from app import audit
from app import runtime as runtimes
from app.config import Settings
from app.db import short_connection
from app.devcontainer.compose import SERVICE_NAME
from app.models import Transition, Workspace
from app.runtime import NoSuchService, ProvisionError, Runtime
from app.ssh import hostkey, keys, paramiko_limits
from app.ssh.ide_credentials import IdeCredentials
from app.ssh.relay import LOOPBACK_NAMES, relay
from app.ssh.session import Pty, Session, SessionRefused
from app.ssh.transport import KEY_CHANGE_SECONDS, GatewayTransport
from app.states import JobStatus as J
from app.states import Status as S
from app.workspaces import activity, recordings, service, strangers

log = logging.getLogger("berth.ssh")

FAIL_WINDOW_SECONDS = 300
START_WAIT_SECONDS = 300
AUTH_TIMEOUT_SECONDS = 30
MAX_TRACKED_ADDRESSES = 10_000  # failed-login history kept, in addresses
# Connections not yet signed in hold a thread each: at most this many, and this many
# from one address, so nobody can exhaust the gateway without a key.
MAX_UNAUTHENTICATED = 64
MAX_UNAUTHENTICATED_PER_ADDRESS = 8
MAX_ACCOUNTS_CACHED = 1024
# Each tunnel holds a thread here (and a process in the engine's control container where
# it goes through the engine): bounded per connection.
MAX_TUNNELS_PER_CONNECTION = 256
# Session channels (shells, commands, sftp) open at once on one connection; OpenSSH's own
# MaxSessions is 10.
MAX_SESSIONS_PER_CONNECTION = 64


class FailureLimiter:
    """Failed connections per client address within a window; over the limit, the
    address is turned away at connect until its oldest failure leaves the window."""

    def __init__(self, limit: int, window: float = FAIL_WINDOW_SECONDS):
        self.limit, self.window = limit, window
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, address: str, now: float) -> deque:
        failures = self._failures[address]
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]  # addresses with nothing to hold are forgotten
            return deque()
        return failures

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._trim(address, time.monotonic())) >= self.limit

    def fail(self, address: str) -> None:
        with self._lock:
            now = time.monotonic()
            if address not in self._failures and len(self._failures) >= MAX_TRACKED_ADDRESSES:
                # Many addresses at once: forget the one whose newest failure is oldest.
                oldest = min(self._failures, key=lambda a: self._failures[a][-1])
                del self._failures[oldest]
            self._trim(address, now)
            self._failures[address].append(now)

    def forgive(self, address: str) -> None:
        """Take back the latest failure (the connection logged in with another key)."""
        with self._lock:
            failures = self._failures.get(address)
            if failures:
                failures.pop()
            if failures is not None and not failures:
                del self._failures[address]


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    shell: str


class Gateway:
    def __init__(self, settings: Settings, runtime: Runtime | None = None):
        paramiko_limits.install()
        self.settings = settings
        self.runtime = runtime or runtimes.connect(
            settings, agent_socket_root=settings.agent_socket_root
        )
        self.host_key = hostkey.load_or_create(settings.data_dir)
        self.limiter = FailureLimiter(settings.ssh_fail_limit)
        self._accounts: dict[tuple[str, str], Account] = {}
        self._listener: socket.socket | None = None
        self.stopping = threading.Event()
        self._waiting: dict[str, int] = {}  # unauthenticated connections per address
        self._waiting_lock = threading.Lock()

    def account(self, container_id: str, user: str) -> Account:
        """The workspace user's uid, gid and login shell (from its passwd database)."""
        key = (container_id, user)
        if key not in self._accounts:
            found = self.runtime.exec(
                container_id, ["getent", "passwd", user], timeout=10
            ).stdout.split(":")
            if len(found) >= 7:
                if len(self._accounts) >= MAX_ACCOUNTS_CACHED:
                    self._accounts.clear()
                self._accounts[key] = Account(
                    found[0], int(found[2]), int(found[3]), found[6].strip() or "/bin/sh"
                )
            else:
                uid = int(user) if user.isdigit() else 0
                return Account(user, uid, uid, "/bin/sh")
        return self._accounts[key]

    def listen(self) -> socket.socket:
        host = self.settings.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, self.settings.ssh_port))
        listener.listen(64)
        self._listener = listener
        return listener

    def serve_forever(self) -> None:
        listener = self._listener or self.listen()
        with short_connection():
            activity.reset_sessions("ssh")  # sessions a previous gateway left counted
        if self.settings.apps_domain != "none":
            # In path mode all IDEs share one origin: none gets git credentials.
            threading.Thread(
                target=IdeCredentials(self.runtime, self.account).run,
                args=(self.stopping,),
                name="ide-credentials",
                daemon=True,
            ).start()
        log.info(
            "ssh: gateway listening on %s:%s (host key %s)",
            self.settings.host,
            self.settings.ssh_port,
            keys.fingerprint(self.host_key.asbytes()),
        )
        while not self.stopping.is_set():
            try:
                client, address = listener.accept()
            except OSError:
                break
            if self.limiter.blocked(address[0]):
                log.warning(
                    "ssh: %s is over the failed-login limit; connection dropped", address[0]
                )
                client.close()
                continue
            if not self.admit(address[0]):
                log.warning(
                    "ssh: too many connections waiting to sign in (from %s); dropped", address[0]
                )
                client.close()
                continue
            threading.Thread(
                target=self._handle, args=(client, address), name="ssh-conn", daemon=True
            ).start()

    def admit(self, address: str) -> bool:
        """Count a new connection as waiting to sign in, unless there are too many."""
        with self._waiting_lock:
            mine = self._waiting.get(address, 0)
            if (
                sum(self._waiting.values()) >= MAX_UNAUTHENTICATED
                or mine >= MAX_UNAUTHENTICATED_PER_ADDRESS
            ):
                return False
            self._waiting[address] = mine + 1
            return True

    def signed_in_or_gone(self, address: str) -> None:
        """A waiting connection signed in or ended: it no longer counts."""
        with self._waiting_lock:
            left = self._waiting.get(address, 0) - 1
            if left > 0:
                self._waiting[address] = left
            else:
                self._waiting.pop(address, None)

    def close(self) -> None:
        self.stopping.set()
        if self._listener:
            self._listener.close()

    def _handle(self, client: socket.socket, address) -> None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = GatewayTransport(client)
        transport.add_server_key(self.host_key)
        transport.set_keepalive(30)
        conn = Connection(self, transport, address, client.getsockname())
        try:
            try:
                transport.start_server(server=conn)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                log.info("ssh: handshake with %s failed: %s", address[0], exc)
                transport.close()
                return
            conn.serve()
        finally:
            conn.stop_waiting()
            transport.close()  # whatever ended serve: no channel outlives it


class Connection(paramiko.ServerInterface):
    """One client connection: who it is, which workspace, and its channels."""

    def __init__(self, gateway: Gateway, transport: paramiko.Transport, peer, local):
        self.gateway, self.transport = gateway, transport
        self.peer, self.local = peer, local
        self.user = self.key = None
        self.workspace_id: int | None = None
        self.target = "?"
        self.shared = False
        self.marked_used = False  # this connection recorded that someone else used it
        self.remote_user = "root"
        self.folder: str | None = None
        self.person_env: dict[str, str] = {}
        self.sessions: dict[int, Session] = {}
        self.session_ids: set[int] = set()  # channels opened as sessions, until they end
        self.session_lock = threading.Lock()
        self.tunnels: dict[int, tuple[str, int]] = {}
        self.counted = False
        self.offered_key = False
        self.announced = False
        self.waiting = True  # counted by the gateway until signed in or gone
        self.container_id: str | None = None  # the workspace's container, for tunnels
        self.open_tunnels = 0  # counted from the request until the relay ends
        self.tunnel_lock = threading.Lock()

    @property
    def connection_line(self) -> str:
        return f"{self.peer[0]} {self.peer[1]} {self.local[0]} {self.local[1]}"

    @property
    def client_line(self) -> str:
        return f"{self.peer[0]} {self.peer[1]} {self.local[1]}"

    # --- authentication ---------------------------------------------------------------

    def get_allowed_auths(self, username):
        # Keyboard-interactive signs nobody in: after the keys failed, it is how the client
        # is told why (OpenSSH prints its instructions; clients in batch mode skip it).
        return "publickey,keyboard-interactive"

    def check_auth_interactive(self, username, submethods):
        return paramiko.server.InteractiveQuery("Berth", self._why_refused(username))

    def check_auth_interactive_response(self, responses):
        return self._refuse("?", "keyboard-interactive (only keys sign in)")

    def _why_refused(self, username: str) -> str:
        """Words for the person that say nothing of anyone else: the same whether the key
        is on some account or not (a public key alone may be offered), and whether or
        not a workspace of that name exists for anyone."""
        account = self.gateway.settings.public_url.rstrip("/") + "/account/"
        if not self.offered_key:
            return (
                f"Berth signs in with SSH keys only, and none was offered. Add your public "
                f"key on {account} and connect with it."
            )
        return (
            f"No workspace {username[:64]!r} opens with the key offered. Check that the key is "
            f"on your account ({account}; ssh -i picks a key) and that the user is the "
            "workspace's name (NAME@host), or OWNER.NAME for one shared with you: the "
            "workspace's page shows the command."
        )

    def check_auth_publickey(self, username, key):
        """Whether ``key`` may open the workspace ``username`` names. paramiko asks this
        before it checks the signature, also for a key offered without one (anyone may
        offer a public key): so nothing here says who signed in; that is recorded once
        the transport is authenticated (serve)."""
        self.offered_key = True
        with short_connection():
            owner = keys.owner_of(key.asbytes())
            if owner is None:
                fingerprint = keys.fingerprint(key.asbytes())
                self._record_refusal(username, "failure", fingerprint)
                return self._refuse(username, f"unregistered key {fingerprint}")
            user, row = owner
            ws = service.find_for_login(user, username)
            if ws is None:
                self._record_refusal(username, "denied", row.fingerprint, key_of=user.username)
                return self._refuse(username, f"a key of {user.username}'s has no such workspace")
        # The last key that passed is the one the signature is checked for next.
        self.user, self.key, self.workspace_id = user, row, ws.id
        self.target = f"{ws.owner.username}.{ws.name}"
        self.shared = ws.owner_id != user.id
        return paramiko.AUTH_SUCCESSFUL

    def _record_refusal(self, username: str, outcome: str, fingerprint: str, **detail) -> None:
        """Once per connection (clients offer each of their keys in turn); the actor is
        unknown: no signature proved who offered the key."""
        if not self.counted:
            audit.record(
                "ssh.login",
                actor="unknown",
                source_ip=self.peer[0],
                target=f"login:{username}"[:160],
                outcome=outcome,
                key=fingerprint,
                **detail,
            )

    def signed_in(self) -> None:
        """The transport is authenticated, by the key checked last: now it is a login."""
        with short_connection():
            audit.record(
                "ssh.login",
                actor=self.user.username,
                source_ip=self.peer[0],
                target=f"workspace:{self.target}",
                key=self.key.fingerprint,
                shared=self.shared,
            )
            keys.touch(self.key)
            if self.shared:
                strangers.used_by(self.workspace_id, self.user, "signed in over SSH")
        if self.counted:
            self.counted = False
            self.gateway.limiter.forgive(self.peer[0])

    def start_recording(self, pty, kind: str, command: str | None):
        """A Cast when the workspace's template records sessions, else None."""
        with short_connection():
            ws = Workspace.get_or_none(Workspace.id == self.workspace_id)
            if ws is None or not recordings.wanted(ws):
                return None
            title = f"{self.user.username}: ssh {self.target}" + (f" {command}" if command else "")
            return recordings.Cast(
                self.gateway.settings.data_dir,
                ws,
                self.user.username,
                pty.width,
                pty.height,
                title[:500],
                pty.term or "xterm",
            )

    def finish_recording(self, cast, exit_code: int | None) -> int:
        with short_connection():
            return cast.close(exit_code).id

    def audit(self, action: str, **detail) -> None:
        with short_connection():
            audit.record(
                action,
                actor=self.user.username,
                source_ip=self.peer[0],
                target=f"workspace:{self.target}",
                **detail,
            )

    def _refuse(self, username: str, reason: str) -> int:
        log.warning("ssh: refused %r from %s: %s", username[:64], self.peer[0], reason)
        # Counted at the first refusal, not at disconnect: a client may already be
        # trying again before this connection is torn down. One per connection, since
        # clients offer each of their keys in turn.
        if not self.counted:
            self.counted = True
            self.gateway.limiter.fail(self.peer[0])
        return paramiko.AUTH_FAILED

    # --- channels ---------------------------------------------------------------------

    def check_channel_request(self, kind, chanid):
        if kind != "session":
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with self.session_lock:
            # A session holds its place from its channel's opening to its end; one closed
            # before it asked for anything gives its place up here.
            for found in list(self.session_ids):
                session = self.sessions.get(found)
                if session is not None and session.channel.closed and not session.started:
                    self.session_ids.discard(found)
                    self.sessions.pop(found, None)
            if len(self.session_ids) >= MAX_SESSIONS_PER_CONNECTION:
                log.warning("ssh: %s has %d sessions open; refused another", self.target,
                            len(self.session_ids))  # fmt: skip
                return paramiko.OPEN_FAILED_RESOURCE_SHORTAGE
            self.session_ids.add(chanid)
        return paramiko.OPEN_SUCCEEDED

    def forget_session(self, chanid: int) -> None:
        with self.session_lock:
            self.session_ids.discard(chanid)
            self.sessions.pop(chanid, None)

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        host, port = destination
        # The workspace's loopback, or another service of a compose workspace by its name
        # (the runtime connects only to those).
        if host not in LOOPBACK_NAMES and not SERVICE_NAME.fullmatch(str(host)):
            log.info(
                "ssh: %s asked to forward to %s:%s; only loopback and services are allowed",
                self.target,
                host,
                port,
            )
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with self.tunnel_lock:
            if self.open_tunnels >= MAX_TUNNELS_PER_CONNECTION:
                log.warning("ssh: %s has %d tunnels open; refused another", self.target,
                            self.open_tunnels)  # fmt: skip
                return paramiko.OPEN_FAILED_RESOURCE_SHORTAGE
            self.open_tunnels += 1
        self.tunnels[chanid] = (LOOPBACK_NAMES.get(host, host), port)
        return paramiko.OPEN_SUCCEEDED

    def _session(self, channel) -> Session | None:
        """The session of a channel opened as one (not a tunnel's, not one that ended)."""
        with self.session_lock:
            if channel.get_id() not in self.session_ids:
                return None
            return self.sessions.setdefault(channel.get_id(), Session(self, channel))

    def check_channel_pty_request(
        self, channel, term, width, height, pixelwidth, pixelheight, modes
    ):
        session = self._session(channel)
        if session is None:
            return False
        session.pty = Pty(term, width, height)
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight):
        session = self._session(channel)
        if session is None:
            return False
        session.resize(width, height)
        return True

    def check_channel_env_request(self, channel, name, value):
        session = self._session(channel)
        return session is not None and session.set_env(
            name.decode() if isinstance(name, bytes) else name,
            value.decode() if isinstance(value, bytes) else value,
        )

    def check_channel_forward_agent_request(self, channel):
        session = self._session(channel)
        if session is None:
            return False
        session.agent = True
        return True

    def check_channel_shell_request(self, channel):
        session = self._session(channel)
        return session is not None and session.start("shell")

    def check_channel_exec_request(self, channel, command):
        text = command.decode(errors="replace") if isinstance(command, bytes) else command
        session = self._session(channel)
        return session is not None and session.start("exec", text)

    def check_channel_subsystem_request(self, channel, name):
        session = self._session(channel)
        return name == "sftp" and session is not None and session.start("sftp")

    # --- the connection's life ----------------------------------------------------------

    def stop_waiting(self) -> None:
        if self.waiting:
            self.waiting = False
            self.gateway.signed_in_or_gone(self.peer[0])

    def serve(self) -> None:
        """Accept channels until the client disconnects (or fails to log in in time);
        start a relay for each tunnel."""
        deadline = time.monotonic() + AUTH_TIMEOUT_SECONDS
        changing_since = None
        while self.transport.is_active():
            channel = self.transport.accept(1)
            if not self.transport.is_authenticated():
                if time.monotonic() > deadline:
                    self.transport.close()
                continue
            self.stop_waiting()
            # Any key change (ours, the client's, paramiko's after 512 MB) ends in time:
            # meanwhile sessions cannot send and answers are held.
            if self.transport.clear_to_send.is_set():
                changing_since = None
            elif changing_since is None:
                changing_since = time.monotonic()
            elif time.monotonic() - changing_since > KEY_CHANGE_SECONDS:
                log.info("ssh: %s did not finish changing keys; disconnected", self.peer[0])
                self.transport.close()
                break
            if self.user and not self.announced:
                self.announced = True
                self.signed_in()
                log.info(
                    "ssh: %s connected to %s from %s", self.user.username, self.target, self.peer[0]
                )
                # After the login: OpenSSH takes no key change while it authenticates.
                try:
                    self.transport.prefer_fast_cipher()
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    log.info("ssh: changing keys with %s failed: %s", self.peer[0], exc)
                    self.transport.close()
                    break
            if channel is None:
                continue
            destination = self.tunnels.pop(channel.get_id(), None)
            if not destination:
                # paramiko holds channels by weak reference only: a session channel lives
                # in its Session (until the session ends), not in a local of this loop.
                self._session(channel)
            else:
                threading.Thread(
                    target=self._tunnel, args=(channel, destination), name="ssh-tunnel", daemon=True
                ).start()
        if self.announced:
            log.info("ssh: %s disconnected from %s", self.user.username, self.target)

    def _tunnel(self, channel, destination: tuple[str, int]) -> None:
        try:
            self._open_and_relay(channel, destination)
        finally:
            with self.tunnel_lock:
                self.open_tunnels -= 1

    def _open_and_relay(self, channel, destination: tuple[str, int]) -> None:
        host, port = destination
        runtime = self.gateway.runtime
        try:
            # IDEs open a tunnel per request: look the container up once, and again only
            # when it no longer runs (the workspace stopped or was rebuilt).
            try:
                if self.container_id is None:
                    raise ProvisionError("not looked up yet")
                sock = runtime.open_tunnel(self.container_id, host, port)
            except NoSuchService:
                raise  # the container is fine: the name is no service of it
            except ProvisionError:
                self.container_id = self.running_container(lambda _text: None)
                sock = runtime.open_tunnel(self.container_id, host, port)
        except (SessionRefused, ProvisionError, OSError) as exc:
            log.info("ssh: tunnel to %s:%s in %s failed: %s", host, port, self.target, exc)
            channel.close()
            return
        except Exception:  # the engine's API failed: the channel must not hang open
            log.exception("ssh: tunnel to %s:%s in %s failed", host, port, self.target)
            channel.close()
            return
        relay(channel, sock, on_input=lambda: self.record_activity(f"forwarded port {port}"))

    def record_activity(self, detail: str, sessions: int = 0) -> None:
        every = self.gateway.settings.activity_interval
        if not sessions and not activity.would_record(self.workspace_id, "ssh", every):
            return  # throttled: no connection to the database for nothing
        try:
            with short_connection():
                activity.record(
                    self.workspace_id,
                    "ssh",
                    f"{detail} ({self.user.username})",
                    sessions=sessions,
                    every=every,
                )
        except Exception:  # activity is bookkeeping; it never breaks a session
            log.exception("ssh: could not record activity for %s", self.target)

    def running_container(self, say) -> str:
        """The id of the workspace's running container, starting the workspace first if
        needed (and saying so through ``say``). Where it runs, and as whom, is what the
        worker recorded: no engine lookup."""
        job, requested = None, False
        deadline = time.monotonic() + START_WAIT_SECONDS
        while True:
            with short_connection():
                ws = Workspace.get_or_none(Workspace.id == self.workspace_id)
                if ws is None or ws.status == S.DELETED:
                    raise SessionRefused("the workspace no longer exists")
                if ws.status == S.RUNNING and ws.container_id and ws.runtime_host:
                    try:  # a new container: its environment probed first
                        ws = service.once_set_up(ws, data_dir=self.gateway.settings.data_dir)
                    except service.WorkspaceError as exc:
                        raise SessionRefused(exc.message) from None
                if ws.status == S.RUNNING and ws.container_id and ws.runtime_host:
                    self.remote_user = ws.remote_user or "root"
                    self.folder = ws.workspace_folder
                    self.person_env = ws.person_env
                    return ws.container_id
                if job is not None:
                    job = Transition.get_by_id(job.id)
                    if job.status == J.FAILED and requested:
                        raise SessionRefused(f"the workspace failed to start: {job.error}")
                    if job.status in (J.SUCCEEDED, J.FAILED):
                        job = None
                if job is None:
                    job = self._start(ws, requested)
                    if not requested:
                        requested = True
                        say(f"berth: workspace {ws.name} is {ws.status}; starting it, please wait…")
            if time.monotonic() > deadline:
                raise SessionRefused("the workspace did not start in time; see its page")
            time.sleep(0.5)

    def _start(self, ws: Workspace, requested_before: bool) -> Transition | None:
        """Ask for a start, or find the job the workspace is busy with."""
        active = service.active_job(ws)
        if active is not None:
            return active
        if ws.status not in (S.STOPPED, S.FAILED):
            return None  # on its way (building, starting): wait
        if requested_before:
            raise SessionRefused(f"the workspace is {ws.status}: {ws.error or 'see its page'}")
        try:
            return service.request(
                ws,
                "start",
                cause="ssh",
                actor=self.user.username,
                data_dir=self.gateway.settings.data_dir,
            )
        except service.WorkspaceError as exc:
            if exc.code != "busy":
                raise SessionRefused(exc.message) from None
            return service.active_job(ws)
