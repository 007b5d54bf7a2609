"""Settings: from command-line flags, ``BERTH_*`` environment variables, an optional TOML
file, and defaults for the embedded mode, in that order of precedence.

Every entry point loads settings the same way, so ``berth admin``, ``berth token`` and
``berth serve`` run with the same data dir and environment act on the same instance.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting has a value Berth cannot use; the message names the setting."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting


def _env_name(name: str) -> str:
    return "BERTH_" + name.upper()


SMTP_TLS = ("starttls", "ssl", "none")


def _as_choice(name: str, value, choices: tuple[str, ...]) -> str:
    text = str(value).lower()
    if text not in choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(choices)}")
    return text


def _as_port(setting: str, value) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(setting, f"{value!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise ConfigError(setting, f"{port} is not a port number (1-65535)")
    return port


def _as_positive_int(setting: str, value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(setting, f"{value!r} is not a whole number") from None
    if number < 0:
        raise ConfigError(setting, f"{number} must not be negative")
    return number


def _as_networks(setting: str, value) -> str:
    from app.destinations import parse_networks

    text = str(value or "")
    try:
        parse_networks(p for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(setting, str(exc)) from None
    return text


def _as_rate_limit(setting: str, value) -> str:
    if str(value) in (Settings.login_limit_account, Settings.login_limit_ip):
        return str(value)  # a default: every process but the web then skips importing limits
    from limits import parse as parse_rate_limit  # (with asyncio: about 14 MiB a process)

    try:
        parse_rate_limit(str(value))
    except ValueError:
        raise ConfigError(
            setting, f"{value!r} is not a rate limit; write it like '5 per minute'"
        ) from None
    return str(value)


def _as_bool(setting: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(setting, f"{value!r} is not true or false")


def _as_role_map(setting: str, value) -> str:
    """``group=role,group=role``: which identity-provider group gives which role."""
    from app.roles import ROLES

    text = str(value or "").strip()
    for pair in filter(None, (p.strip() for p in text.split(","))):
        group, _, role = pair.partition("=")
        if not group.strip() or role.strip() not in ROLES:
            raise ConfigError(
                setting,
                f"{pair!r} is not group=role with a role of {', '.join(ROLES)} "
                "(for example berth-admins=admin,auditors=auditor)",
            )
    return text


def _as_duration(setting: str, value) -> str:
    """A duration such as 90d, or empty for none."""
    from app.durations import parse_duration

    text = str(value or "").strip()
    if text:
        try:
            parse_duration(text)
        except ValueError as exc:
            raise ConfigError(setting, str(exc)) from None
    return text


def _as_database_url(setting: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConfigError(setting, f"{value!r} names no file; use sqlite:////abs/path/berth.db")
        return value
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname or not parts.path.strip("/"):
            raise ConfigError(
                setting,
                f"{value!r} needs a host and a database name: "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
            )
        return value
    raise ConfigError(
        setting,
        f"unsupported database {parts.scheme or value!r}; use sqlite:///PATH or postgresql://...",
    )


def _as_subnet(setting: str, value) -> str:
    try:
        network = ipaddress.ip_network(str(value))
    except ValueError:
        raise ConfigError(setting, f"{value!r} is not a network like 10.231.0.0/16") from None
    if network.version != 4 or network.prefixlen > 24:
        raise ConfigError(setting, f"{value} must be an IPv4 range of /24 or larger")
    return str(network)


def _as_cron(setting: str, value) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(str(value), timezone="UTC")
    except ValueError as exc:
        raise ConfigError(
            setting, f"{value!r} is not a cron expression like '0 3 * * *' ({exc})"
        ) from None
    return str(value)


def _as_apps_domain(setting: str, value, public_host: str | None) -> str:
    value = str(value or "").strip().lower().lstrip(".")
    if not value:
        loopback = public_host in ("localhost", "127.0.0.1", "::1")
        return "localhost" if loopback else "none"
    if value != "none" and not re.fullmatch(
        r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", value
    ):
        raise ConfigError(setting, f"{value!r} is not a domain name (or 'none' for paths)")
    return value


def _as_url(setting: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(setting, f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


@dataclass
class Settings:
    """The resolved settings of one Berth instance."""

    data_dir: Path
    database_url: str
    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8080
    ssh_port: int = 2222
    apps_port: int = 0  # the IDE and apps origin; BERTH_PORT + 1 by default
    # Workspaces at <workspace>--<owner>.<apps_domain>; "localhost" by default when the
    # public URL is on this machine, "none" for paths (/@owner/workspace/) instead.
    apps_domain: str = ""
    ssh_host: str = ""  # the name people give ssh; the public URL's host by default
    ssh_fail_limit: int = 10  # failed SSH connections per address per 5 minutes
    public_url: str = ""
    docker_host: str = "unix:///var/run/docker.sock"
    web_threads: int = 8  # for pages, short API calls and the IDE's forward_auth
    # Long-lived requests (exec, followed logs, create-and-wait, files) have threads of
    # their own (app.slots): at most this many at once, and this many for one person.
    web_long_requests: int = 256
    web_long_per_user: int = 64
    proxy_hops: int = 0
    login_limit_account: str = "5 per 5 minutes"
    login_limit_ip: str = "20 per 5 minutes"
    log_level: str = "info"
    subnet_pool: str = "10.231.0.0/16"
    local_repo_roots: str = ""
    # Private networks Berth may fetch from for people: git hosts, registries and Feature
    # registries on the team's own network (comma-separated, e.g. 10.0.0.0/8); any other
    # loopback, private or link-local destination is refused (docs/security.md).
    private_destinations: str = ""
    # How tunnels reach a workspace's loopback and commands are ended: "auto" does it from
    # this host where the engine's processes are visible, through the engine otherwise;
    # "engine" always goes through the engine (app/runtime/docker/control.py).
    engine_control: str = "auto"
    lifecycle_interval: int = 30  # seconds between idle/runtime/TTL/dormancy checks
    reconcile_interval: int = 30  # seconds between comparisons of the database and engine
    activity_interval: int = 30  # at most one activity write per workspace and source
    backup_dir: str = ""  # <data dir>/backups by default
    backup_schedule: str = "0 3 * * *"  # cron, in UTC
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    # A folder on the engine's host for the tools bundle (the appliance); Docker's own
    # volume storage when empty.
    tools_dir: str = ""
    # The longest an API token may live (a duration like 90d); empty: no limit.
    token_max_lifetime: str = ""
    # Audit records older than this many days are pruned (0: kept forever).
    audit_retention_days: int = 0
    # A bearer token that may read /metrics (for Prometheus); admins' and auditors' API
    # tokens may read it too.
    metrics_token: str = ""
    # Single sign-on. OpenID Connect: any provider by its issuer (discovery) URL.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_scopes: str = "openid email profile"
    oidc_name: str = "single sign-on"  # shown on the button: "Sign in with …"
    oidc_groups_claim: str = "groups"
    # GitHub OAuth (github.com, or GitHub Enterprise Server by its URLs).
    github_client_id: str = ""
    github_client_secret: str = ""
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    # Who a first sign-in creates an account for: email domains and/or provider groups
    # (comma-separated); with neither, only people with an account already get in.
    sso_allowed_domains: str = ""
    sso_allowed_groups: str = ""
    # Provider group -> Berth role, applied at every sign-in: group=role,group=role.
    sso_role_map: str = ""
    password_login: bool = True
    currency: str = "USD"  # the unit template prices and budgets are in (a label)
    recording_retention_days: int = 30  # recorded sessions are deleted after this
    # Where anomaly and budget alerts are POSTed as JSON (empty: shown on the admin page only).
    alert_webhook: str = ""
    # Email to owners before Berth stops or deletes their workspace by itself: an SMTP
    # server (empty host: no email), "starttls", "ssl" or "none", the sender address.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    # The egress proxy's port on the egress network's gateway (sandboxes' only way out).
    egress_port: int = 3128
    sources: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def uses_tls(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def max_token_lifetime(self):
        """The admin's ceiling on API token lifetimes (a timedelta), or None."""
        from app.durations import parse_duration

        return parse_duration(self.token_max_lifetime) if self.token_max_lifetime else None

    @property
    def repo_roots(self) -> list[Path]:
        """Server folders whose git repositories workspaces may be created from."""
        return [Path(p).resolve() for p in self.local_repo_roots.split(":") if p]

    @property
    def private_networks(self) -> list:
        """The networks of ``private_destinations`` (app.destinations)."""
        from app.destinations import parse_networks

        return parse_networks(p for p in self.private_destinations.split(",") if p.strip())

    @property
    def agent_socket_root(self) -> Path:
        """Host folder for forwarded SSH agent sockets, bind-mounted into workspaces."""
        return self.data_dir / "run" / "ssh-agent"

    @property
    def apps_origin(self) -> str:
        """Where IDEs and workspace ports are served: scheme://host:port (path mode) or
        scheme://*.domain:port written with ``{label}`` for the workspace's part."""
        scheme = "https" if self.uses_tls else "http"
        host = urlsplit(self.public_url).hostname or "127.0.0.1"
        if self.apps_domain != "none":
            host = "{label}." + self.apps_domain
        default = 443 if scheme == "https" else 80
        return f"{scheme}://{host}" + ("" if self.apps_port == default else f":{self.apps_port}")

    @property
    def web_socket(self) -> Path:
        """The web app's socket behind Caddy (berth serve)."""
        return self.data_dir / "run" / "web.sock"

    @property
    def backups(self) -> Path:
        return Path(self.backup_dir)

    @property
    def helper_dir(self) -> Path:
        """Berth's own folder holding what workspaces mount read-only (berth-keepalive)."""
        return self.data_dir / "run"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def child_environment(self) -> dict[str, str]:
        """The environment that makes a child process load exactly these settings."""
        env = {
            _env_name(f.name): str(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("sources", "secret_key")
        }
        env["BERTH_DATA_DIR"] = str(self.data_dir)
        return env

    @classmethod
    def load(cls, overrides: dict | None = None, environ=None) -> Settings:
        """Resolve settings; raise ConfigError naming the first bad one."""
        environ = os.environ if environ is None else environ
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        sources: dict[str, str] = {}

        data_dir = overrides.get("data_dir") or environ.get("BERTH_DATA_DIR") or "./data"
        data_dir = Path(data_dir).expanduser().resolve()
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError("BERTH_DATA_DIR", f"{data_dir} exists and is not a directory")

        file_values = _read_config_file(environ, data_dir)

        def pick(name: str, default):
            if name in overrides:
                sources[name] = "command line"
                return overrides[name]
            if _env_name(name) in environ:
                sources[name] = "environment"
                return environ[_env_name(name)]
            if name in file_values:
                sources[name] = "config file"
                return file_values[name]
            sources[name] = "default"
            return default

        host = str(pick("host", "127.0.0.1"))
        port = _as_port("BERTH_PORT", pick("port", 8080))
        public_url = pick("public_url", "")
        public_url = (
            _as_url("BERTH_PUBLIC_URL", public_url)
            if public_url
            else f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
        )
        log_level = str(pick("log_level", "info")).lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                "BERTH_LOG_LEVEL", f"{log_level!r} is not one of debug, info, warning, error"
            )

        engine_control = str(pick("engine_control", "auto")).lower()
        if engine_control not in ("auto", "engine"):
            raise ConfigError(
                "BERTH_ENGINE_CONTROL", f"{engine_control!r} is not one of auto, engine"
            )

        settings = cls(
            data_dir=data_dir,
            database_url=_as_database_url(
                "BERTH_DATABASE_URL", str(pick("database_url", f"sqlite:///{data_dir}/berth.db"))
            ),
            secret_key=str(pick("secret_key", "")),
            host=host,
            port=port,
            ssh_port=_as_port("BERTH_SSH_PORT", pick("ssh_port", 2222)),
            apps_port=_as_port(
                "BERTH_APPS_PORT", pick("apps_port", port + 1 if port < 65535 else 8081)
            ),
            apps_domain=_as_apps_domain(
                "BERTH_APPS_DOMAIN", pick("apps_domain", ""), urlsplit(public_url).hostname
            ),
            ssh_host=str(pick("ssh_host", "") or urlsplit(public_url).hostname),
            ssh_fail_limit=_as_positive_int("BERTH_SSH_FAIL_LIMIT", pick("ssh_fail_limit", 10))
            or 1,
            public_url=public_url,
            docker_host=str(
                pick("docker_host", environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
            ),
            web_threads=_as_positive_int("BERTH_WEB_THREADS", pick("web_threads", 8)) or 1,
            web_long_requests=_as_positive_int(
                "BERTH_WEB_LONG_REQUESTS", pick("web_long_requests", 256)
            )
            or 1,
            web_long_per_user=_as_positive_int(
                "BERTH_WEB_LONG_PER_USER", pick("web_long_per_user", 64)
            )
            or 1,
            proxy_hops=_as_positive_int("BERTH_PROXY_HOPS", pick("proxy_hops", 0)),
            login_limit_account=_as_rate_limit(
                "BERTH_LOGIN_LIMIT_ACCOUNT", pick("login_limit_account", "5 per 5 minutes")
            ),
            login_limit_ip=_as_rate_limit(
                "BERTH_LOGIN_LIMIT_IP", pick("login_limit_ip", "20 per 5 minutes")
            ),
            log_level=log_level,
            subnet_pool=_as_subnet("BERTH_SUBNET_POOL", pick("subnet_pool", "10.231.0.0/16")),
            local_repo_roots=str(pick("local_repo_roots", "")),
            private_destinations=_as_networks(
                "BERTH_PRIVATE_DESTINATIONS", pick("private_destinations", "")
            ),
            engine_control=engine_control,
            reconcile_interval=_as_positive_int(
                "BERTH_RECONCILE_INTERVAL", pick("reconcile_interval", 30)
            ),
            lifecycle_interval=_as_positive_int(
                "BERTH_LIFECYCLE_INTERVAL", pick("lifecycle_interval", 30)
            )
            or 1,
            activity_interval=_as_positive_int(
                "BERTH_ACTIVITY_INTERVAL", pick("activity_interval", 30)
            )
            or 1,
            backup_dir=str(Path(pick("backup_dir", "") or data_dir / "backups").expanduser()),
            backup_schedule=_as_cron("BERTH_BACKUP_SCHEDULE", pick("backup_schedule", "0 3 * * *")),
            backup_keep_daily=_as_positive_int(
                "BERTH_BACKUP_KEEP_DAILY", pick("backup_keep_daily", 7)
            ),
            backup_keep_weekly=_as_positive_int(
                "BERTH_BACKUP_KEEP_WEEKLY", pick("backup_keep_weekly", 4)
            ),
            tools_dir=str(pick("tools_dir", "")),
            token_max_lifetime=_as_duration(
                "BERTH_TOKEN_MAX_LIFETIME", pick("token_max_lifetime", "")
            ),
            audit_retention_days=_as_positive_int(
                "BERTH_AUDIT_RETENTION_DAYS", pick("audit_retention_days", 0)
            ),
            metrics_token=str(pick("metrics_token", "")),
            oidc_issuer=_as_url("BERTH_OIDC_ISSUER", pick("oidc_issuer", ""))
            if pick("oidc_issuer", "")
            else "",
            oidc_client_id=str(pick("oidc_client_id", "")),
            oidc_client_secret=str(pick("oidc_client_secret", "")),
            oidc_scopes=str(pick("oidc_scopes", "openid email profile")),
            oidc_name=str(pick("oidc_name", "single sign-on")),
            oidc_groups_claim=str(pick("oidc_groups_claim", "groups")),
            github_client_id=str(pick("github_client_id", "")),
            github_client_secret=str(pick("github_client_secret", "")),
            github_url=_as_url("BERTH_GITHUB_URL", pick("github_url", "https://github.com")),
            github_api_url=_as_url(
                "BERTH_GITHUB_API_URL", pick("github_api_url", "https://api.github.com")
            ),
            sso_allowed_domains=str(pick("sso_allowed_domains", "")).lower(),
            sso_allowed_groups=str(pick("sso_allowed_groups", "")),
            sso_role_map=_as_role_map("BERTH_SSO_ROLE_MAP", pick("sso_role_map", "")),
            password_login=_as_bool("BERTH_PASSWORD_LOGIN", pick("password_login", True)),
            currency=str(pick("currency", "USD")),
            egress_port=_as_port("BERTH_EGRESS_PORT", pick("egress_port", 3128)),
            recording_retention_days=_as_positive_int(
                "BERTH_RECORDING_RETENTION_DAYS", pick("recording_retention_days", 30)
            ),
            alert_webhook=_as_url("BERTH_ALERT_WEBHOOK", pick("alert_webhook", ""))
            if pick("alert_webhook", "")
            else "",
            smtp_host=str(pick("smtp_host", "")),
            smtp_port=_as_port("BERTH_SMTP_PORT", pick("smtp_port", 587)),
            smtp_tls=_as_choice("BERTH_SMTP_TLS", pick("smtp_tls", "starttls"), SMTP_TLS),
            smtp_user=str(pick("smtp_user", "")),
            smtp_password=str(pick("smtp_password", "")),
            smtp_from=str(pick("smtp_from", "")),
            sources=sources,
        )
        if settings.smtp_host and "@" not in settings.smtp_from:
            raise ConfigError(
                "BERTH_SMTP_FROM", "is needed with BERTH_SMTP_HOST: the address mail comes from"
            )
        if settings.oidc_issuer and not settings.oidc_client_id:
            raise ConfigError("BERTH_OIDC_CLIENT_ID", "is needed with BERTH_OIDC_ISSUER")
        if not settings.password_login and not (settings.oidc_issuer or settings.github_client_id):
            raise ConfigError(
                "BERTH_PASSWORD_LOGIN",
                "cannot be off without single sign-on (BERTH_OIDC_ISSUER or "
                "BERTH_GITHUB_CLIENT_ID): nobody could sign in",
            )
        if settings.secret_key and len(settings.secret_key) < 32:
            raise ConfigError("BERTH_SECRET_KEY", "must be at least 32 characters long")
        return settings

    def ensure_data_dir(self) -> None:
        """Create the data dir and the instance's secret key on first use."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # The database, keys and sockets are the control plane's alone: no other
            # local user reads or connects to anything in here.
            self.data_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigError(
                "BERTH_DATA_DIR", f"cannot create {self.data_dir}: {exc.strerror}"
            ) from None
        if not self.secret_key:
            self.secret_key = _read_or_create_secret(self.data_dir / "secret_key")

    @property
    def instance(self) -> str:
        """A short id of this instance, on every Docker object it makes, so instances
        sharing one engine never touch each other's workspaces."""
        return _read_or_create_secret(self.data_dir / "instance_id", lambda: secrets.token_hex(4))


def _read_config_file(environ, data_dir: Path) -> dict:
    explicit = environ.get("BERTH_CONFIG")
    path = Path(explicit) if explicit else data_dir / "berth.toml"
    if not path.exists():
        if explicit:
            raise ConfigError("BERTH_CONFIG", f"{path} does not exist")
        return {}
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("BERTH_CONFIG", f"{path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(Settings)} - {"sources", "data_dir"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError("BERTH_CONFIG", f"{path} has unknown settings: {', '.join(unknown)}")
    return values


def _read_or_create_secret(path: Path, make=lambda: secrets.token_urlsafe(48)) -> str:
    if path.exists():
        return path.read_text().strip()
    key = make()
    # Written with O_EXCL so two processes starting at once agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def configure_logging(settings: Settings) -> None:
    """One log format for Berth's long-running processes (the worker, the SSH gateway)."""
    import logging

    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper()),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Their INFO lines announce every scheduled run and every transport; Berth logs
    # what matters itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
