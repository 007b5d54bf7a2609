"""The current shape of Berth's tables.

The schema itself is owned by ``app.migrations``: a change here goes with a new migration
that brings existing databases to the same shape (tests compare the two).
"""

import json
from datetime import UTC, datetime

import peewee

from app.db import database

# admin: everything; template-admin: templates too; member: their own and shared
# workspaces; auditor: reads everything, changes nothing (app.authz has the matrix).
from app.roles import ROLES  # noqa: E402,F401  (kept here: most code finds it here)

# What a token may do (docs/security.md has the table of every API route and its scope):
# account manages its user's SSH keys and API tokens.
TOKEN_SCOPES = ("workspaces:read", "workspaces:write", "workspaces:exec", "account", "admin")


def utcnow() -> datetime:
    """Naive UTC, the one form stored in every timestamp column on both engines."""
    return datetime.now(UTC).replace(tzinfo=None)


MAX_ROW_ID = 2**63 - 1  # the largest id a BIGINT (and SQLite's INTEGER) holds


def row_id(value) -> int | None:
    """A database id from a request (``"42"``), or None for anything that cannot be one:
    not a plain number, or too large for the column."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_ROW_ID:
        return None
    return int(text)


def stamp(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with its zone, for the API."""
    return value.isoformat() + "Z" if value else None


class BaseModel(peewee.Model):
    class Meta:
        database = database


class User(BaseModel):
    username = peewee.CharField(max_length=32, unique=True)
    password_hash = peewee.CharField(max_length=255, null=True)
    role = peewee.CharField(max_length=16, default="member")
    created_at = peewee.DateTimeField(default=utcnow)
    disabled_at = peewee.DateTimeField(null=True)
    last_login_at = peewee.DateTimeField(null=True)
    # Set for a one-time password: the next login must choose a new one first.
    password_change_required = peewee.BooleanField(default=False)
    # Part of every signed-in session; raised at logout and at a password change, it ends
    # every session signed before (cookies are signed, not stored, so this is the switch).
    session_version = peewee.IntegerField(default=0)
    # Set once the account signed in through single sign-on: "<issuer>|<sub>" for
    # OpenID Connect, "github|<id>" for GitHub.
    email = peewee.CharField(max_length=254, null=True, unique=True)
    sso_subject = peewee.CharField(max_length=255, null=True, unique=True)
    # The person's dotfiles repository, installed into each new workspace of theirs
    # (app.workspaces.dotfiles).
    dotfiles_url = peewee.TextField(null=True)

    class Meta:
        table_name = "users"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class ApiToken(BaseModel):
    user = peewee.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    prefix = peewee.CharField(max_length=16)
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    scopes = peewee.CharField(max_length=255, default=" ".join(TOKEN_SCOPES))
    # Set for a token that may act on this one workspace only (an agent inside it).
    workspace = peewee.DeferredForeignKey(
        "Workspace", null=True, on_delete="CASCADE", backref="scoped_tokens"
    )
    # A sandbox's token is derived from this and the instance's secret key, so Berth can
    # hand it to the sandbox's commands again without storing it (app.workspaces.sandboxes).
    nonce = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "api_tokens"

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


ALL_MODELS = [User, ApiToken]


class Template(BaseModel):
    """A blueprint for workspaces: where its devcontainer.json lives, and admin limits."""

    name = peewee.CharField(max_length=64, unique=True)
    description = peewee.TextField(default="")
    source_kind = peewee.CharField(max_length=16)  # builtin, upload or git
    source = peewee.TextField()  # a folder, or a git URL
    git_ref = peewee.CharField(max_length=255, null=True)
    git_path = peewee.CharField(max_length=255, null=True)
    profile = peewee.CharField(max_length=16, default="workspace")  # workspace or agent
    parameters = peewee.TextField(default="{}")  # JSON: name -> {type, default, min, max}
    limits = peewee.TextField(default="{}")  # JSON: max_cpu, max_memory_mb, max_ttl_hours
    approvals = peewee.TextField(default="{}")  # JSON: policy exceptions an admin granted
    # JSON: per_hour, per_cpu_hour, per_gb_hour (the instance's currency), set by admins
    pricing = peewee.TextField(default="{}")
    enabled = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "templates"


class Workspace(BaseModel):
    owner = peewee.ForeignKeyField(User, backref="workspaces", on_delete="CASCADE")
    name = peewee.CharField(max_length=63)
    # The name while the workspace exists, NULL once deleted: unique per owner, and a
    # deleted workspace's name can be used again.
    live_name = peewee.CharField(max_length=63, null=True)
    template = peewee.ForeignKeyField(Template, null=True, on_delete="SET NULL")
    repo_url = peewee.TextField(null=True)
    repo_ref = peewee.CharField(max_length=255, null=True)
    # The config's path in the repository, when the creator chose one of several.
    repo_config = peewee.TextField(null=True)
    # JSON list of the configs the repository has, when it has several and none was
    # chosen (the create failed asking which): the choice offered on its page.
    repo_choices = peewee.TextField(null=True)
    notified = peewee.CharField(max_length=64, null=True)  # the last warning mailed (a hash)
    parameters = peewee.TextField(default="{}")
    status = peewee.CharField(max_length=16, default="pending", index=True)
    error = peewee.TextField(null=True)
    image = peewee.CharField(max_length=255, null=True)
    container_id = peewee.CharField(max_length=80, null=True)
    keep_volumes = peewee.BooleanField(default=False)
    ttl_expires_at = peewee.DateTimeField(null=True)
    # JSON list of host[:port] entries it may reach through the egress proxy, added to
    # its template's (app.egress); NULL: none of its own.
    egress_allow = peewee.TextField(null=True)
    # When the workspace entered its current status: idle, runtime and dormancy count
    # from here.
    status_since = peewee.DateTimeField(null=True, default=utcnow)
    # The engine's StartedAt of the container when Berth last started it, verbatim: a
    # different one means the engine started it again by itself (reconcile).
    engine_started_at = peewee.CharField(max_length=40, null=True)
    # Where the started workspace is reached, as the worker recorded it from the runtime
    # (app.runtime.Placement): the web tier and the SSH gateway read it here. The address
    # is cleared when it stops.
    address = peewee.CharField(max_length=64, null=True)
    # Text: what a config names (remoteUser) has no length limit of Berth's own.
    runtime_host = peewee.TextField(null=True)
    remote_user = peewee.TextField(null=True)
    workspace_folder = peewee.TextField(null=True)
    # JSON {"instance": container id, "env": {...}}: the userEnvProbe result with remoteEnv
    # applied, for that container (app.workspaces.lifecycle.record_environment).
    remote_env = peewee.TextField(null=True)
    # JSON {"instance", "state", "since", "note"}: what Berth last did with the browser
    # IDE of that container (app.workspaces.ide_sessions).
    ide = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    # Set (with why) the first time someone other than the owner runs anything in it, or
    # it is shared: from then on the owner's git credentials are not offered in it.
    credentials_off = peewee.TextField(null=True)
    # One, or one per started service of a compose config: quotas and costs count each
    # with the template's CPUs and memory (set by the worker when it makes them).
    containers = peewee.IntegerField(default=1)

    class Meta:
        table_name = "workspaces"
        indexes = ((("owner", "live_name"), True),)

    @property
    def environment_known(self) -> bool:
        """Whether the environment of the running container is recorded (person_env)."""
        recorded = json.loads(self.remote_env or "{}")
        return bool(self.container_id) and recorded.get("instance") == self.container_id

    @property
    def person_env(self) -> dict[str, str]:
        """What a person's process in the running container gets (remoteEnv included);
        nothing recorded for this container yet is an empty environment."""
        recorded = json.loads(self.remote_env or "{}")
        if not self.container_id or recorded.get("instance") != self.container_id:
            return {}
        return dict(recorded.get("env") or {})

    @property
    def repo(self) -> dict | None:
        """The repository it is built from, as the API gives and takes it."""
        if not self.repo_url:
            return None
        found = {"url": self.repo_url, "ref": self.repo_ref}
        if self.repo_config:
            found["config"] = self.repo_config
        if self.repo_choices:
            found["choices"] = json.loads(self.repo_choices)
        return found


class Transition(BaseModel):
    """One requested change to a workspace (a job): what, why, by whom, and its log."""

    workspace = peewee.ForeignKeyField(Workspace, backref="transitions", on_delete="CASCADE")
    kind = peewee.CharField(max_length=16)
    # pending running succeeded failed
    status = peewee.CharField(max_length=16, default="pending", index=True)
    cause = peewee.CharField(max_length=16, default="user")
    actor = peewee.CharField(max_length=64, null=True)
    options = peewee.TextField(default="{}")
    reason = peewee.TextField(null=True)  # why it was requested, for automatic ones
    error = peewee.TextField(null=True)
    log = peewee.TextField(default="")
    # JSON: [[stage, seconds], ...] in the order they ran (app.workspaces.lifecycle.JobLog)
    stages = peewee.TextField(default="[]")
    # JSON: Berth's own warnings about the job (JobLog.warn), for the page's warning box.
    warnings = peewee.TextField(default="[]")
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    # How many times a worker took it up; a job that was running when the worker died
    # twice is failed, not tried again (it is what killed it).
    attempts = peewee.IntegerField(default=0)

    class Meta:
        table_name = "transitions"


class StateChange(BaseModel):
    """Every status a workspace passed through, with when and why."""

    workspace = peewee.ForeignKeyField(Workspace, backref="state_changes", on_delete="CASCADE")
    transition = peewee.ForeignKeyField(Transition, null=True, on_delete="SET NULL")
    from_status = peewee.CharField(max_length=16, null=True)
    to_status = peewee.CharField(max_length=16)
    cause = peewee.CharField(max_length=16)
    actor = peewee.CharField(max_length=64, null=True)
    message = peewee.TextField(null=True)
    at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "state_changes"


ALL_MODELS += [Template, Workspace, Transition, StateChange]


class SshKey(BaseModel):
    """A public key that lets its user into the SSH gateway."""

    user = peewee.ForeignKeyField(User, backref="ssh_keys", on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    key_type = peewee.CharField(max_length=64)
    public_key = peewee.TextField()  # "type base64", without the comment
    # SHA256:… as OpenSSH prints it; one key identifies one user.
    fingerprint = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ssh_keys"


class GitCredential(BaseModel):
    """A person's way into git hosts: a personal access token for one host (kind
    "token"), or the one SSH key pair Berth made for them (kind "ssh", no host). The
    secret is sealed with a key outside the database (app.credentials.vault)."""

    user = peewee.ForeignKeyField(User, backref="git_credentials", on_delete="CASCADE")
    kind = peewee.CharField(max_length=8)
    host = peewee.CharField(max_length=255, null=True)  # "git.example.com[:port]"
    username = peewee.CharField(max_length=255, null=True)
    secret = peewee.TextField()
    public_key = peewee.TextField(null=True)
    fingerprint = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "git_credentials"
        indexes = ((("user", "kind", "host"), True),)


ACTIVITY_SOURCES = ("ssh", "ide", "http", "exec", "keepalive")


class Activity(BaseModel):
    """The latest use of a workspace through one source, and its open sessions."""

    workspace = peewee.ForeignKeyField(Workspace, backref="activity", on_delete="CASCADE")
    source = peewee.CharField(max_length=16)
    last_at = peewee.DateTimeField(default=utcnow)
    detail = peewee.TextField(null=True)
    open_sessions = peewee.IntegerField(default=0)

    class Meta:
        table_name = "activity"
        indexes = ((("workspace", "source"), True),)


ALL_MODELS += [SshKey, Activity]


class ScheduledJob(BaseModel):
    """A job of the worker's scheduler, with its last run, for the admin page."""

    name = peewee.CharField(max_length=32, unique=True)
    schedule = peewee.CharField(max_length=64)
    next_run_at = peewee.DateTimeField(null=True)
    last_started_at = peewee.DateTimeField(null=True)
    last_finished_at = peewee.DateTimeField(null=True)
    last_outcome = peewee.CharField(max_length=16, null=True)  # running succeeded failed
    last_detail = peewee.TextField(null=True)
    runs = peewee.IntegerField(default=0)
    failures = peewee.IntegerField(default=0)

    class Meta:
        table_name = "scheduled_jobs"


ALL_MODELS += [ScheduledJob]


class WorkspacePort(BaseModel):
    """A port of a workspace reachable on the apps origin: from forwardPorts (source
    config) or opened by its owner (source user); shared ones by every signed-in user."""

    workspace = peewee.ForeignKeyField(Workspace, backref="ports", on_delete="CASCADE")
    port = peewee.IntegerField()
    label = peewee.CharField(max_length=64, null=True)
    source = peewee.CharField(max_length=16, default="user")
    shared = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "workspace_ports"
        indexes = ((("workspace", "port"), True),)


ALL_MODELS += [WorkspacePort]


class Group(BaseModel):
    """A team: used for sharing, quotas and budgets."""

    name = peewee.CharField(max_length=64, unique=True)
    description = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "groups"


class GroupMember(BaseModel):
    group = peewee.ForeignKeyField(Group, backref="members", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "group_members"
        indexes = ((("group", "user"), True),)


class WorkspaceShare(BaseModel):
    """A workspace shared by its owner with one person or one group (exactly one of the
    two is set): they may use it (IDE, ports, SSH, exec), not manage it."""

    workspace = peewee.ForeignKeyField(Workspace, backref="shares", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, null=True, backref="shared_with_me", on_delete="CASCADE")
    group = peewee.ForeignKeyField(Group, null=True, backref="shares", on_delete="CASCADE")
    created_by = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "workspace_shares"
        indexes = ((("workspace", "user", "group"), True),)


ALL_MODELS += [Group, GroupMember, WorkspaceShare]


class AuditEvent(BaseModel):
    """One audit record; app.audit appends them and chains their hashes."""

    seq = peewee.BigIntegerField(unique=True)
    at = peewee.DateTimeField(default=utcnow, index=True)
    actor = peewee.CharField(max_length=64, index=True)
    source_ip = peewee.CharField(max_length=64, null=True)
    action = peewee.CharField(max_length=64, index=True)
    target = peewee.CharField(max_length=160, null=True, index=True)
    outcome = peewee.CharField(max_length=16)
    detail = peewee.TextField(default="{}")
    prev_hash = peewee.CharField(max_length=64)
    hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_events"


ALL_MODELS += [AuditEvent]


class Quota(BaseModel):
    """Limits for one person or one group (exactly one is set); NULL means no limit."""

    user = peewee.ForeignKeyField(User, null=True, unique=True, on_delete="CASCADE")
    group = peewee.ForeignKeyField(Group, null=True, unique=True, on_delete="CASCADE")
    max_workspaces = peewee.IntegerField(null=True)
    max_running = peewee.IntegerField(null=True)
    max_cpu = peewee.FloatField(null=True)
    max_memory_mb = peewee.IntegerField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "quotas"


ALL_MODELS += [Quota]


class Budget(BaseModel):
    """A group's monthly budget: an alert at 80 %, and with ``hard_stop`` at 100 % new
    starts are refused and running workspaces stopped. The months record what was done."""

    group = peewee.ForeignKeyField(Group, unique=True, backref="budget", on_delete="CASCADE")
    monthly = peewee.FloatField()
    hard_stop = peewee.BooleanField(default=False)
    alerted_month = peewee.CharField(max_length=7, null=True)  # "2026-11"
    stopped_month = peewee.CharField(max_length=7, null=True)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "budgets"


ALL_MODELS += [Budget]


class Recording(BaseModel):
    """A recorded SSH pty session (asciicast v2) or exec (command, output, exit code)."""

    workspace = peewee.ForeignKeyField(Workspace, backref="recordings", on_delete="CASCADE")
    kind = peewee.CharField(max_length=16)  # ssh or exec
    actor = peewee.CharField(max_length=64)
    title = peewee.TextField()
    path = peewee.TextField()  # under <data dir>/recordings
    size = peewee.BigIntegerField(default=0)
    exit_code = peewee.IntegerField(null=True)
    started_at = peewee.DateTimeField(default=utcnow, index=True)
    ended_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "recordings"


ALL_MODELS += [Recording]
