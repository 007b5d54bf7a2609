"""The API's request and answer shapes as pydantic models: the one description from which
requests are checked (app.api.spec) and the OpenAPI document is written (app.api.openapi).

Requests are strict: JSON's true is not 1, "5" is not 5 (query strings, all text, are
read with pydantic's usual conversions). A field's ``Refusal`` gives the error code
clients know it by and the problem in words. What needs the database (does the template
exist, may this person use that backup) stays with the views and services, which say
so in their own words; the models check what the request alone shows.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app import accounts, durations
from app.api.spec import Refusal
from app.models import ROLES, TOKEN_SCOPES
from app.states import Status
from app.workspaces.service import NAME_RULE


class Body(BaseModel):
    """A JSON request body. Fields it does not know are refused (``unknown_code``) unless
    a model says ``extra="ignore"``: those routes ignored them before models described them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    error_code: ClassVar[str] = "invalid_request"  # for fields without a Refusal
    unknown_code: ClassVar[str] = "unknown_field"
    unknown_noun: ClassVar[str] = "field"  # "unknown field 'x'"


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other parameters are not ours to refuse
    error_code: ClassVar[str] = "invalid_query"


def _flag(default: bool):
    """A query flag as the API always read them: 1, true and yes are true; 0, false
    and no are false; anything else is the default."""

    def read(value: Any) -> bool:
        text = str(value).lower()
        return (
            True
            if text in ("1", "true", "yes")
            else False
            if text in ("0", "false", "no")
            else default
        )

    return BeforeValidator(read)


# Text in the document, a naive UTC datetime once read (app.durations.parse_time).
QueryTime = Annotated[
    str | None,
    AfterValidator(durations.parse_time),
    Refusal("invalid_time"),
    Field(description="ISO 8601, like 2026-11-01 or 2026-11-01T14:30Z"),
]


# Workspaces and templates


class Repo(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    url: str
    ref: str | None = None
    config: str | None = Field(
        None,
        description="which devcontainer.json of the repository, when it has several "
        "(a path in it, like .devcontainer/api/devcontainer.json)",
    )


class RepoState(Repo):
    choices: list[str] | None = Field(
        None,
        description="the configs the repository has, when it has several and none was "
        "chosen (the create failed asking which: PUT …/config with one of them)",
    )


class ConfigChoice(Body):
    error_code = "invalid_config"
    config: Annotated[
        str,
        Field(examples=[".devcontainer/api/devcontainer.json"]),
        Refusal("invalid_config", "must be a path in the repository to a devcontainer.json"),
    ]


class NewWorkspace(Body):
    name: Annotated[
        str,
        Field(min_length=2, max_length=32, pattern=NAME_RULE.pattern),
        Refusal(
            "invalid_name",
            "is not allowed: use 2 to 32 lowercase letters, digits and single hyphens, "
            "starting with a letter",
        ),
    ]
    template: Annotated[str | None, Refusal("unknown_template", "must be a template's name")] = None
    repo: Annotated[Repo | None, Refusal("invalid_repo", "must be an object with a 'url'")] = None
    parameters: Annotated[
        dict[str, Any] | None, Refusal("invalid_parameters", "must be an object")
    ] = None
    ttl: Annotated[
        str | None, Refusal("invalid_ttl", 'must be a duration like "4h"'), Field(examples=["4h"])
    ] = None
    restore: Annotated[
        str | None,
        Refusal("invalid_restore", "must be a workspace backup's id"),
        Field(description="a workspace backup id: the volumes come from it"),
    ] = None
    egress: Annotated[
        list[str] | None,
        Refusal("invalid_egress", 'must be a list like ["host", "host:port", "*.domain"]'),
    ] = None
    wait: Annotated[
        bool | Annotated[float, Field(gt=0, le=1800)],
        Refusal("invalid_wait", "must be true or a number of seconds up to 1800"),
        Field(description="answer when the workspace is running or failed (true: 600 s)"),
    ] = False


class TemplateChange(Body):
    error_code = "invalid_template"
    parameters: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None
    approvals: dict[str, Any] | None = None
    enabled: bool | None = None
    pricing: dict[str, Any] | None = None


class KeepAlive(Body):
    model_config = ConfigDict(extra="ignore")
    detail: Annotated[str | None, Refusal("invalid_detail", "must be text")] = None


class TtlChange(Body):
    error_code = "invalid_ttl"
    unknown_code = "invalid_ttl"
    ttl: Annotated[str | None, Field(examples=["4h"], description="from now; null removes it")] = (
        None
    )
    expires_at: Annotated[str | None, Field(json_schema_extra={"format": "date-time"})] = None

    @model_validator(mode="after")
    def _one(self):
        if len(self.model_fields_set) != 1:
            raise ValueError('send exactly one of "ttl" (like "4h", or null) or "expires_at"')
        return self


class IdleTimeoutChange(Body):
    model_config = ConfigDict(extra="ignore")
    idle_timeout: Annotated[
        str | int,
        Refusal("invalid_parameter", 'must be like "30m", or "0"'),
        Field(examples=["1h"]),
    ]


class PortChange(Body):
    model_config = ConfigDict(extra="ignore")
    error_code = "invalid_port"
    shared: bool = Field(False, description="every signed-in user may open it")
    label: str | None = None


class EgressChange(Body):
    error_code = unknown_code = "invalid_egress"
    allow: list[str] = Field(examples=[["pypi.org", "github.com:443", "*.example.com"]])


# Agents: exec, files, done


class Exec(Body):
    command: Annotated[
        list[str],
        Field(min_length=1),
        Refusal("invalid_command", "must be a non-empty array of strings"),
    ]
    timeout: Annotated[
        float,
        Field(gt=0, le=3600),
        Refusal("invalid_timeout", "must be a number of seconds from 1 to 3600"),
    ] = 60
    stdin: Annotated[str | None, Refusal("invalid_stdin", "must be text")] = None
    stream: Annotated[
        bool,
        Refusal("invalid_stream", "must be true or false"),
        Field(
            description="NDJSON: {stream, data} lines as output comes, then {exit_code, timed_out}"
        ),
    ] = False


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL byte")
    return value


class FilePath(Query):
    path: Annotated[
        str,
        Field(min_length=1, description="absolute, or relative to the workspace folder"),
        AfterValidator(_no_nul),
        Refusal("invalid_path", "give ?path=… (absolute, or relative to the workspace)"),
    ]


class Done(Body):
    model_config = ConfigDict(extra="ignore")
    error_code = "invalid_done"
    outcome: Literal["success", "failure"] = "success"
    summary: str | None = None


def _seconds_or_flag(value: Any) -> Any:
    """``wait=true`` is the longest usual wait; ``false``/``0`` none; else seconds."""
    text = str(value).lower()
    if text in ("true", "yes"):
        return 600
    if text in ("", "false", "no"):
        return 0
    return value


class ActionOptions(Query):
    wait: Annotated[
        float,
        BeforeValidator(_seconds_or_flag),
        Field(ge=0, le=1800, description="answer when the job ended (true: up to 600 s)"),
        Refusal("invalid_wait", "must be true or a number of seconds up to 1800"),
    ] = 0


class DeleteOptions(ActionOptions):
    keep_volumes: Annotated[bool, _flag(False)] = False


class LogOptions(Query):
    follow: Annotated[bool, _flag(True), Field(description="false: the log so far")] = True


# Accounts: tokens, keys, people, groups, quotas


def _accounts(check):
    """app.accounts' own check of a value (the CLI's too), refused in its words."""

    def run(value):
        try:
            return check(value)
        except accounts.AccountError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(run)


def _scopes(value: list[str]) -> list[str]:
    return accounts.validate_scopes(value) if value else value  # []: the caller's own


class NewToken(Body):
    error_code = "invalid_token_request"
    name: str | None = None
    scopes: Annotated[list[str], _accounts(_scopes)] | None = Field(
        None,
        description="a subset of the caller's (default: the caller's)",
        json_schema_extra={"items": {"type": "string", "enum": list(TOKEN_SCOPES)}},
    )
    lifetime: str | None = Field(None, examples=["4h"], description="within the maximum")
    workspace: int | str | None = Field(None, description="limits the token to that workspace")


class NewKey(Body):
    model_config = ConfigDict(extra="ignore")
    error_code = "invalid_key"
    public_key: str = Field(description="OpenSSH one-line format", examples=["ssh-ed25519 AAAA…"])
    name: str | None = None


class Dotfiles(Body):
    """A person's dotfiles repository, installed into each of their new workspaces."""

    model_config = ConfigDict(extra="forbid")
    error_code = "invalid_dotfiles"
    url: str | None = Field(
        max_length=2048,
        description=(
            "an https or ssh repository (a private one with your git credentials); "
            "null or empty removes it"
        ),
        examples=["https://github.com/you/dotfiles"],
    )


class NewGitCredential(Body):
    """A personal access token for one git host (kind "token"), or a new SSH key pair
    Berth makes and keeps for you (kind "ssh"; it replaces the one made before)."""

    error_code = "invalid_credential"
    kind: Literal["token", "ssh"]
    host: str | None = Field(
        None, max_length=300, description="the git host of a token", examples=["github.com"]
    )
    token: str | None = Field(None, max_length=4096, description="the token (never shown again)")
    username: str | None = Field(
        None, max_length=255, description='the name sent with the token; "git" when not given'
    )


class GitCredential(BaseModel):
    id: int
    kind: str
    host: str | None
    username: str | None
    public_key: str | None = Field(description="an ssh key's public half, to add on git hosts")
    fingerprint: str | None
    created_at: str
    last_used_at: str | None


Role = Annotated[
    str, _accounts(accounts.check_role), Field(json_schema_extra={"enum": list(ROLES)})
]


class UserChange(Body):
    error_code = unknown_code = "invalid_user"
    role: Annotated[Role | None, Refusal("invalid_role")] = None
    email: Annotated[str | None, Refusal("invalid_email", "must be text or null")] = None


class NewGroup(Body):
    model_config = ConfigDict(extra="ignore")
    error_code = "invalid_group"
    name: str
    description: str | None = None


_WHOLE = Refusal("invalid_quota", "must be a non-negative whole number or null")


class QuotaChange(Body):
    error_code = unknown_code = "invalid_quota"
    unknown_noun = "quota"
    max_workspaces: Annotated[int | None, Field(ge=0), _WHOLE] = None
    max_running: Annotated[int | None, Field(ge=0), _WHOLE] = None
    max_cpu: Annotated[
        float | None, Field(ge=0), Refusal("invalid_quota", "must be a non-negative number or null")
    ] = None
    max_memory_mb: Annotated[int | None, Field(ge=0), _WHOLE] = None


# Cost, budgets, audit


class BudgetChange(Body):
    error_code = unknown_code = "invalid_budget"
    monthly: float | None = Field(None, ge=0, description="null removes the budget")
    hard_stop: bool = Field(False, description="stop the group's workspaces when spent")


class CostQuery(Query):
    since: QueryTime = None
    until: QueryTime = None
    by: Annotated[
        Literal["workspace", "user", "group"],
        Refusal("invalid_grouping", "must be workspace, user or group"),
    ] = "workspace"
    format: str | None = Field(None, description="csv for a spreadsheet")


class AuditQuery(Query):
    user: str | None = None
    workspace: str | None = Field(None, description="owner.name")
    action: str | None = Field(None, description="a prefix")
    since: QueryTime = None
    until: QueryTime = None
    limit: Annotated[int, Refusal("invalid_limit", "must be a whole number")] = Field(
        200, description="at most 5000"
    )
    format: str | None = Field(None, description="jsonl exports everything, oldest first")


# Answers. They list what clients rely on; an answer may carry more.


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    """Refused; the message says why."""

    error: ErrorDetail


class Activity(BaseModel):
    last_at: str | None = None
    source: str | None = None
    detail: str | None = None
    open_sessions: dict[str, Any] = {}
    sources: dict[str, Any] = Field({}, description="per source: last_at and detail")


class Lifecycle(BaseModel):
    """What happens by itself if nobody uses the workspace."""

    idle_timeout: str = Field(examples=["30m"])
    idle_since: str | None = None
    stops_at: str | None = None
    stop_rule: Literal["idle", "max-runtime"] | None = None
    deletes_at: str | None = None
    delete_rule: Literal["ttl", "dormancy", "failed-cleanup"] | None = None
    warnings: list[str] = []


class Ide(BaseModel):
    """The browser IDE: it starts on the first open of its URL and stops when nobody has
    had it open for the template's ide_idle_timeout; the workspace keeps running."""

    state: Literal["off", "starting", "ready", "stopped", "unavailable"]
    since: str | None = None
    note: str | None = Field(None, description="why it stopped, or why it is unavailable")


class Workspace(BaseModel):
    id: int
    name: str
    owner: str
    template: str | None
    repo: RepoState | None
    parameters: dict[str, Any]
    status: Status
    error: str | None
    created_at: str
    ttl_expires_at: str | None
    ssh: str | None = Field(examples=["ssh -p 2222 demo@berth.example"])
    urls: dict[str, Any] | None = Field(description="the IDE and the open ports in the browser")
    ide: Ide | None = None
    activity: Activity | None
    lifecycle: Lifecycle


class StateChangeRecord(BaseModel):
    at: str
    from_: str | None = Field(alias="from")
    to: str
    cause: str
    actor: str | None
    message: str | None


class Stage(BaseModel):
    """A part of a job and the seconds it took: source, config, build, volumes, create,
    start, hooks, dotfiles, ide, stop, backup, remove. ``hooks.<hook>`` (one per phase
    that ran commands, like ``hooks.postCreateCommand``) is a part of ``hooks``."""

    stage: str
    seconds: float


class Job(BaseModel):
    id: int
    kind: str
    status: str
    cause: str
    actor: str | None
    reason: str | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    stages: list[Stage]
    # Berth's own warnings about the job (an ignored config property, an extension or
    # dotfiles that did not install); never a line a build or a hook printed.
    warnings: list[str]


class History(BaseModel):
    """Status changes (newest first, at most 200) and jobs (newest first, at most 100)."""

    changes: list[StateChangeRecord]
    transitions: list[Job]


class TransitionRef(BaseModel):
    id: int
    kind: str
    status: str


class Accepted(BaseModel):
    """Accepted; the worker carries it out."""

    workspace: Workspace
    transition: TransitionRef


class Template(BaseModel):
    name: str
    description: str
    profile: str
    source: str
    parameters: dict[str, Any]
    limits: dict[str, Any]
    pricing: dict[str, Any]


class Port(BaseModel):
    port: int
    label: str | None
    source: Literal["config", "user"]
    shared: bool
    url: str | None
    # Whether a server listens on it in the workspace now; null: not running, not known.
    listening: bool | None


class Listening(BaseModel):
    """A port a server listens on inside the workspace, open in the browser or not."""

    port: int
    loopback_only: bool
    open: bool


class ExecResult(BaseModel):
    exit_code: int
    timed_out: bool
    stdout: str
    stderr: str
    truncated: bool = Field(False, description="the output passed 32 MB: stream to read it all")


class FileWritten(BaseModel):
    path: str
    bytes: int


class DoneAccepted(BaseModel):
    workspace: int
    outcome: Literal["success", "failure"]
    transition: int


class SshKey(BaseModel):
    id: int
    name: str | None
    type: str
    fingerprint: str = Field(examples=["SHA256:…"])
    public_key: str
    created_at: str
    last_used_at: str | None


class Gateway(BaseModel):
    host: str
    port: int
    host_key: str
    host_key_fingerprint: str


class Token(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    workspace_id: int | None
    status: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None


class NewTokenAnswer(Token):
    token: str = Field(description="the secret, shown this once")


class TokenInfo(BaseModel):
    id: int
    scopes: list[str]
    workspace_id: int | None


class Me(BaseModel):
    id: int
    username: str
    role: str
    groups: list[str]
    token: TokenInfo
    created_at: str
    last_login_at: str | None


class Person(BaseModel):
    username: str
    role: str
    email: str | None
    sso: bool
    groups: list[str]
    disabled: bool
    created_at: str
    last_login_at: str | None


class Group(BaseModel):
    name: str
    description: str
    members: list[str]
