"""The ``berth`` command line: every entry point of Berth, one click group."""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time
from pathlib import Path

import click

from app import __version__, accounts, audit, migrations
from app.config import ConfigError, Settings
from app.db import open_database
from app.durations import parse_duration
from app.models import ROLES, TOKEN_SCOPES
from app.states import JobStatus as J


def _fail(message: str, code: int = 1):
    click.echo(f"berth: {message}", err=True)
    sys.exit(code)


def load_settings(**overrides) -> Settings:
    try:
        return Settings.load(overrides)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)


def _upgrade_and_sync(db, on_step):
    from app.workspaces import templates

    migrations.upgrade(db, on_step=on_step)
    templates.sync_builtin()


def open_instance(settings: Settings, quiet: bool = False) -> None:
    """Create the data dir, connect the database and bring its schema up to date."""
    try:
        settings.ensure_data_dir()
        db = open_database(settings)
        with db.connection_context():
            _upgrade_and_sync(
                db,
                on_step=None
                if quiet
                else lambda step: click.echo(
                    f"berth: database migrated to version {step.version} ({step.description})",
                    err=True,
                ),
            )
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    except migrations.SchemaTooNew as exc:
        _fail(str(exc), 2)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where this instance keeps its data (default ./data, or BERTH_DATA_DIR).",
)


def instance_command(func):
    """Adds ``--data-dir`` and runs the command against the selected instance's database."""

    @data_dir_option
    @functools.wraps(func)
    def wrapper(data_dir, **kwargs):
        settings = load_settings(data_dir=data_dir)
        open_instance(settings, quiet=True)
        try:
            return func(settings, **kwargs)
        except accounts.AccountError as exc:
            _fail(str(exc))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="berth")
def main():
    """Berth: development workspaces for a small team, on one Docker host."""


# --- running Berth -------------------------------------------------------------------


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


@main.command()
@data_dir_option
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for everyone).")
@click.option("--port", type=int, help="The HTTP port people open (default 8080).")
@click.option("--ssh-port", type=int, help="The SSH gateway's port (default 2222).")
def serve(data_dir, host, port, ssh_port):
    """Run all of Berth in the foreground: the embedded default."""
    from app import runtime
    from app.processes.supervisor import (
        Child,
        berth_command,
        caddy_command,
        caddy_environment,
        exec_into,
    )

    settings = load_settings(data_dir=data_dir, host=host, port=port, ssh_port=ssh_port)
    open_instance(settings)
    for number, option in ((settings.port, "--port"), (settings.apps_port, "BERTH_APPS_PORT")):
        if _port_in_use(settings.host, number):
            _fail(f"port {number} on {settings.host} is in use; choose another with {option}", 2)
    try:
        runtime.wait_for_engine(settings, click.echo)
    except KeyboardInterrupt:
        sys.exit(130)
    env = {**os.environ, **settings.child_environment()}
    socket_path = settings.web_socket
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    # Caddy is the front door: the web app listens on a socket only it reaches, and
    # trusts the one proxy hop in front of it for the client's address.
    web_env = {**env, "BERTH_PROXY_HOPS": str(settings.proxy_hops + 1)}
    children = [
        Child("web", berth_command("web", "--bind", f"unix:{socket_path}"), web_env),
        Child("caddy", caddy_command(), {**env, **caddy_environment(settings)}),
        Child("worker", berth_command("worker"), env),
        Child("ssh", berth_command("ssh"), env),
        Child("egress", berth_command("egress"), env),
    ]

    target = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host  # noqa: S104
    ides = settings.apps_origin.replace("{label}", "*")
    exec_into(
        children,
        (target, settings.port),
        [
            f"berth: ready at {settings.public_url}  (data in {settings.data_dir})",
            f"berth: IDEs and ports at {ides}; SSH on port {settings.ssh_port}",
            "berth: press Ctrl-C to stop",
        ],
    )


@main.command()
@data_dir_option
@click.option("--bind", help="HOST:PORT to listen on (default BERTH_HOST:BERTH_PORT).")
def web(data_dir, bind):
    """Run the web app (dashboard, admin, API) under gunicorn."""
    from app.processes import web

    settings = load_settings(data_dir=data_dir)
    open_instance(settings)
    web.exec_master(settings, bind or f"{settings.host}:{settings.port}")


@main.command()
@data_dir_option
def worker(data_dir):
    """Run the worker: provisioning jobs and reconciliation (one per instance)."""
    from app.processes import worker as process
    from app.workspaces.worker import AlreadyRunning

    settings = load_settings(data_dir=data_dir)
    open_instance(settings)
    try:
        process.run(settings)
    except AlreadyRunning as exc:
        _fail(f"{exc}; not starting a second one", 2)


@main.command("ssh")
@data_dir_option
@click.option("--port", "ssh_port", type=int, help="Port to listen on (default BERTH_SSH_PORT).")
def ssh_gateway(data_dir, ssh_port):
    """Run the SSH gateway: ssh, scp, sftp and port forwards into workspaces."""
    from app.processes import ssh

    settings = load_settings(data_dir=data_dir, ssh_port=ssh_port)
    open_instance(settings)
    if _port_in_use(settings.host, settings.ssh_port):
        _fail(f"SSH port {settings.ssh_port} on {settings.host} is in use; choose another", 2)
    ssh.run(settings)


@main.command()
@data_dir_option
def egress(data_dir):
    """The egress gateway of sandboxes: the allowlisting proxy and the dead DNS."""
    from app.processes import egress as process

    settings = load_settings(data_dir=data_dir)
    open_instance(settings, quiet=True)
    process.run(settings)


@main.command()
@click.option("--url", envvar="BERTH_URL", required=True, help="The Berth server (or BERTH_URL).")
@click.option("--token", envvar="BERTH_TOKEN", help="An API token for stdio (or BERTH_TOKEN).")
@click.option("--http", "bind", metavar="HOST:PORT", help="Serve streamable HTTP at /mcp here.")
def mcp(url, token, bind):
    """Berth's agent API as an MCP server: stdio (default) or streamable HTTP."""
    from app import mcp as mcp_server

    if bind:
        import uvicorn

        host, _, port = bind.rpartition(":")
        if not port.isdigit():
            _fail(f"--http: {bind!r} is not HOST:PORT", 2)
        click.echo(f"berth: MCP over streamable HTTP at http://{bind}/mcp", err=True)
        uvicorn.run(
            mcp_server.http_app(url), host=host or "127.0.0.1", port=int(port), log_level="warning"
        )
        return
    if not token:
        _fail("stdio needs --token or BERTH_TOKEN (an API token)", 2)
    mcp_server.build(url, token).run("stdio")


@main.command()
@click.argument("part", type=click.Choice(["web", "worker", "ssh", "egress"]))
@data_dir_option
def health(part, data_dir):
    """Exit 0 when PART of this instance works (for container healthchecks)."""
    from app import health as health_mod

    problem = health_mod.check(load_settings(data_dir=data_dir), part)
    if problem:
        _fail(f"{part} is unhealthy: {problem}")
    click.echo(f"{part}: healthy")


@main.command("config-ssh")
@click.option("--url", envvar="BERTH_URL", required=True, help="The Berth server (or BERTH_URL).")
@click.option("--token", envvar="BERTH_TOKEN", required=True, help="An API token (or BERTH_TOKEN).")
@click.option(
    "--ssh-config",
    type=click.Path(dir_okay=False),
    default="~/.ssh/config",
    show_default=True,
    help="The OpenSSH client configuration to update.",
)
@click.option("--prefix", default="berth-", show_default=True, help="Prefix of the Host names.")
@click.option("--identity-file", help="The private key to use for these hosts.")
def config_ssh(url, token, ssh_config, prefix, identity_file):
    """Write Host entries for your workspaces into ~/.ssh/config (for VS Code Remote-SSH)."""
    from pathlib import Path

    from app.ssh import client_config

    path = Path(ssh_config).expanduser()
    try:
        hosts = client_config.write(url, token, path, prefix, identity_file)
    except client_config.ConfigSshError as exc:
        _fail(str(exc))
    click.echo(f"berth: {len(hosts)} workspace(s) in {path}: {', '.join(hosts) or 'none'}")
    if hosts:
        click.echo(f"berth: connect with: ssh {hosts[0]}")


@main.command()
@data_dir_option
def migrate(data_dir):
    """Bring the database schema up to date."""
    settings = load_settings(data_dir=data_dir)
    open_instance(settings)
    click.echo(f"berth: database schema is at version {migrations.LATEST} (current)")


@main.command()
@data_dir_option
def doctor(data_dir):
    """Check the Docker engine, the database and free disk; say what to fix."""
    from app import doctor as checks

    settings, problem = checks.load_settings_check({"data_dir": data_dir})
    results = [problem] if problem else checks.run_checks(settings)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for check in results:
        click.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix:
            click.echo(f"       fix: {check.fix}")
    failed = [c for c in results if c.status == "fail"]
    pending = [c for c in results if c.status == "warn"]
    if failed:
        click.echo(f"{len(failed)} problem(s) to fix.")
    elif pending:
        click.echo(f"Berth can run; {len(pending)} thing(s) are not ready yet (see WARN above).")
    else:
        click.echo("Everything Berth needs is in order.")
    sys.exit(1 if failed else 0)


# --- the IDE's tools bundle, for hosts that cannot reach npm ----------------------------


@main.group()
def tools():
    """Move the browser IDE's tools bundle (code-server) between engines as a file."""


def _tools_runtime(data_dir):
    from app import runtime as runtimes

    settings = load_settings(data_dir=data_dir)
    try:
        settings.ensure_data_dir()
        return settings, runtimes.connect(settings, timeout=600)
    except (ConfigError, runtimes.ProvisionError) as exc:
        _fail(str(exc), 2)


@tools.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@data_dir_option
def tools_export(file, data_dir):
    """Write the finished bundle on this engine to FILE (a tar archive)."""
    from app.runtime import ProvisionError

    _, runtime = _tools_runtime(data_dir)
    partial = file.with_name(f".{file.name}.partial")
    try:
        with partial.open("wb") as out:
            runtime.export_tools(out)
        partial.replace(file)
    except (ProvisionError, OSError) as exc:
        partial.unlink(missing_ok=True)
        _fail(f"exporting the tools bundle failed: {exc}")
    click.echo(f"berth: tools bundle written to {file} ({file.stat().st_size >> 20} MiB)", err=True)


@tools.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def tools_import(file, data_dir):
    """Make the bundle in FILE (from `berth tools export`) this engine's, so the worker
    does not build it."""
    from app.runtime import ProvisionError

    settings, runtime = _tools_runtime(data_dir)
    try:
        fresh = runtime.import_tools(
            file, lambda line: click.echo(f"berth: {line}", err=True), settings.tools_dir
        )
    except ProvisionError as exc:
        _fail(f"importing the tools bundle failed: {exc}")
    click.echo(
        "berth: tools bundle imported" if fresh else "berth: this tools bundle was already there",
        err=True,
    )


# --- accounts ----------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            _fail("--password-stdin: no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@main.group()
def admin():
    """Manage accounts from the shell (the first admin, a locked-out admin)."""


def _new_password(one_time: bool, from_stdin: bool) -> str:
    if one_time and from_stdin:
        _fail("--one-time-password and --password-stdin exclude each other")
    return accounts.one_time_password() if one_time else _read_password(from_stdin)


one_time_option = click.option(
    "--one-time-password",
    "one_time",
    is_flag=True,
    help="Generate a password, print it, and make the first login replace it.",
)


@admin.command("create-user")
@click.argument("name")
@click.option("--admin", "make_admin", is_flag=True, help="Give the account the admin role.")
@click.option("--role", type=click.Choice(ROLES), help="The account's role (default member).")
@click.option("--email", help="The email single sign-on links this account by.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@one_time_option
@instance_command
def create_user(settings, name, make_admin, role, email, password_stdin, one_time):
    """Create an account named NAME (prompts for its password)."""
    accounts.validate_username(name)
    password = _new_password(one_time, password_stdin)
    user = accounts.create_user(
        name,
        password,
        "admin" if make_admin else role or "member",
        one_time=one_time,
        email=email,
    )
    audit.record("user.create", actor="cli", target=f"user:{user.username}", role=user.role)
    if one_time:
        click.echo(password)
    click.echo(
        f"berth: created {user.role} {user.username}; log in at {settings.public_url}", err=True
    )


@admin.command("list-users")
@instance_command
def list_users(settings):
    """List accounts with their role and status."""
    from app.models import User

    for user in User.select().order_by(User.username):
        state = "disabled" if user.is_disabled else "active"
        click.echo(f"{user.username}\t{user.role}\t{state}")


@admin.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@instance_command
def set_role(settings, name, role):
    """Give NAME the role ROLE."""
    user = accounts.find_user(name)
    before = user.role
    accounts.set_role(user, role)
    audit.record(
        "user.role", actor="cli", target=f"user:{user.username}", before=before, after=role
    )
    click.echo(f"berth: {user.username} is now {role}", err=True)


@admin.command("reset-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@one_time_option
@instance_command
def reset_password(settings, name, password_stdin, one_time):
    """Set a new password for NAME."""
    user = accounts.find_user(name)
    password = _new_password(one_time, password_stdin)
    accounts.set_password(user, password, one_time=one_time)
    if one_time:
        click.echo(password)
    click.echo(f"berth: password of {user.username} changed", err=True)


@main.group()
def token():
    """Create, list and revoke API tokens."""


@token.command("create")
@click.argument("user")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@click.option(
    "--expires", default="30d", show_default=True, help="Lifetime such as 30d, 12h or 'never'."
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(TOKEN_SCOPES),
    help="What the token may do (repeat; default: all its user may).",
)
@click.option(
    "--workspace", "workspace_id", type=int, help="Limit the token to this one workspace (id)."
)
@instance_command
def token_create(settings, user, name, expires, scopes, workspace_id):
    """Create a token for USER and print it on stdout (only this once)."""
    if expires == "never":
        lifetime = None
    else:
        try:
            lifetime = parse_duration(expires)
        except ValueError as exc:
            _fail(f"--expires: {exc}", 2)
    owner = accounts.find_user(user)
    workspace = None
    if workspace_id is not None:
        from app.workspaces import service

        try:
            workspace = service.get_visible(owner, workspace_id, needed="use")
        except service.WorkspaceError as exc:
            _fail(f"--workspace: {exc.message}")
    row, plaintext = accounts.create_token(
        owner,
        name,
        lifetime,
        scopes=list(scopes) or None,
        workspace=workspace,
        max_lifetime=settings.max_token_lifetime,
        actor="cli",
    )
    click.echo(plaintext)
    until = f"until {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else "with no expiry"
    click.echo(f"berth: token {row.id} ({row.name}) for {user}, valid {until}", err=True)


@token.command("list")
@click.argument("user")
@instance_command
def token_list(settings, user):
    """List USER's tokens (never their secret part)."""
    for row in accounts.tokens_of(accounts.find_user(user)):
        expires = f"{row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "never"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(
            f"{row.id}\t{row.name}\t{row.prefix}…\t{row.status()}\texpires {expires}\tused {used}"
        )


@token.command("revoke")
@click.argument("token_id", type=int)
@instance_command
def token_revoke(settings, token_id):
    """Revoke the token with id TOKEN_ID."""
    from app.models import ApiToken

    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        _fail(f"there is no token with id {token_id}")
    accounts.revoke_token(row, actor="cli")
    click.echo(f"berth: token {token_id} ({row.name}) revoked", err=True)


# --- backups -------------------------------------------------------------------------


@main.group()
def backup():
    """Back up the database and workspace volumes; list backups."""


@backup.command("now")
@instance_command
def backup_now(settings):
    """Back up the database now (as the nightly job does, retention included)."""
    from app.models import ScheduledJob
    from app.scheduler import register, run_recorded
    from app.workspaces import scheduled as jobs

    register("backup", f"cron {settings.backup_schedule} (UTC)")
    detail = run_recorded("backup", lambda: jobs.nightly_backup(settings))
    if detail is None:
        _fail(f"backup failed: {ScheduledJob.get(ScheduledJob.name == 'backup').last_detail}")
    click.echo(f"berth: backup written: {detail}", err=True)


@backup.command("list")
@instance_command
def backup_list(settings):
    """List database and workspace backups, newest first, with sizes."""
    from app.backups import database as db_backups
    from app.backups import workspaces as volume_backups

    for item in db_backups.list_backups(settings) + volume_backups.list_backups(settings):
        click.echo(
            f"{item.kind}\t{item.id}\t{item.taken_at:%Y-%m-%d %H:%M:%S} UTC\t"
            f"{item.size} bytes\t{item.path}"
        )


@backup.command("workspace")
@click.argument("name")
@click.option("--owner", help="The workspace's owner (needed when names repeat).")
@click.option("--timeout", default=3600, show_default=True, help="Seconds to wait for it.")
@instance_command
def backup_workspace(settings, name, owner, timeout):
    """Back up the volumes of workspace NAME (the running worker does it; this waits)."""
    from app.models import Transition, User, Workspace
    from app.workspaces import service

    query = Workspace.select().join(User).where(Workspace.live_name == name)
    if owner:
        query = query.where(User.username == owner)
    found = list(query)
    if len(found) != 1:
        _fail(
            f"no workspace named {name!r}" + (f" of {owner}" if owner else "")
            if not found
            else f"{len(found)} workspaces are named {name!r}; say which with --owner"
        )
    try:
        job = service.request(
            found[0], "backup", cause="user", actor="cli", data_dir=settings.data_dir
        )
    except service.WorkspaceError as exc:
        _fail(exc.message)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Transition.get_by_id(job.id)
        if job.status in (J.SUCCEEDED, J.FAILED):
            break
        time.sleep(0.5)
    else:
        _fail("the backup did not finish in time; is the worker (berth serve) running?")
    if job.status == J.FAILED:
        _fail(f"backup failed: {job.error}")
    click.echo(job.log.strip().splitlines()[-2])


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that holds data (backed up first).")
@data_dir_option
def restore(file, force, data_dir):
    """Restore a database backup FILE into this instance's (fresh) database.

    Stop Berth first. Workspace volume backups are restored into new workspaces instead
    (POST /api/v2/workspaces with "restore")."""
    from pathlib import Path

    from app.backups import BackupError
    from app.backups import database as db_backups
    from app.workspaces.worker import AlreadyRunning, InstanceLock

    settings = load_settings(data_dir=data_dir)
    try:
        settings.ensure_data_dir()
        lock = InstanceLock(settings)
    except AlreadyRunning as exc:
        _fail(f"{exc}; stop Berth before restoring")
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    try:
        click.echo(f"berth: {db_backups.restore(settings, Path(file), force=force)}", err=True)
    except BackupError as exc:
        _fail(str(exc))
    finally:
        lock.release()


# --- groups --------------------------------------------------------------------------


@main.group()
def group():
    """Groups (teams) for sharing, quotas and budgets."""


@group.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the group is.")
@instance_command
def group_create(settings, name, description):
    """Create the group NAME."""
    from app import groups

    try:
        made = groups.create(name, description)
    except groups.GroupError as exc:
        _fail(str(exc))
    audit.record("group.create", actor="cli", target=f"group:{made.name}")
    click.echo(f"berth: group {made.name} created", err=True)


@group.command("add")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@instance_command
def group_add(settings, name, users):
    """Add USERS to the group NAME."""
    _change_members(name, users, "add")


@group.command("remove")
@click.argument("name")
@click.argument("users", nargs=-1, required=True)
@instance_command
def group_remove(settings, name, users):
    """Remove USERS from the group NAME."""
    _change_members(name, users, "remove")


def _change_members(name: str, users, how: str) -> None:
    from app import groups

    try:
        found = groups.find(name)
    except groups.GroupError as exc:
        _fail(str(exc))
    change = groups.add_member if how == "add" else groups.remove_member
    for username in users:
        if change(found, accounts.find_user(username)):
            audit.record(
                f"group.member.{how}", actor="cli", target=f"group:{found.name}", user=username
            )


@group.command("list")
@instance_command
def group_list(settings):
    """Groups and their members."""
    from app import groups
    from app.models import Group

    for found in Group.select().order_by(Group.name):
        click.echo(f"{found.name}\t{' '.join(u.username for u in groups.members(found))}")


# --- quotas --------------------------------------------------------------------------


def _quota_subject(user, group_name):
    from app import groups

    if bool(user) == bool(group_name):
        _fail("give exactly one of --user or --group", 2)
    if user:
        return accounts.find_user(user)
    try:
        return groups.find(group_name)
    except groups.GroupError as exc:
        _fail(str(exc))


@main.group()
def quota():
    """Quotas per person or group: workspaces, running ones, CPUs and memory."""


@quota.command("set")
@click.option("--user", help="The person the quota is for.")
@click.option("--group", "group_name", help="The group the quota is for.")
@click.option("--workspaces", type=click.IntRange(0), help="Workspaces in total.")
@click.option("--running", type=click.IntRange(0), help="Running workspaces.")
@click.option("--cpu", type=click.FloatRange(0), help="CPUs of running workspaces.")
@click.option("--memory", type=click.IntRange(0), help="MB of memory of running workspaces.")
@instance_command
def quota_set(settings, user, group_name, workspaces, running, cpu, memory):
    """Set a quota; the limits not given are removed."""
    from app.workspaces import quotas

    subject = _quota_subject(user, group_name)
    values = {
        "max_workspaces": workspaces,
        "max_running": running,
        "max_cpu": cpu,
        "max_memory_mb": memory,
    }
    quotas.set_quota(subject, values)
    audit.record(
        "quota.set",
        actor="cli",
        target=f"{'user' if user else 'group'}:{user or group_name}",
        **values,
    )
    click.echo(json.dumps(quotas.to_dict(subject)))


@quota.command("show")
@click.option("--user", help="The person.")
@click.option("--group", "group_name", help="The group.")
@instance_command
def quota_show(settings, user, group_name):
    """A quota and the current usage, as JSON."""
    from app.workspaces import quotas

    click.echo(json.dumps(quotas.to_dict(_quota_subject(user, group_name))))


# --- the audit log -------------------------------------------------------------------


@main.group("audit")
def audit_group():
    """The tamper-evident audit log."""


@audit_group.command("verify")
@instance_command
def audit_verify(settings):
    """Check every record's hash and the chain; name the first altered or missing one."""
    verdict = audit.verify()
    if not verdict.ok:
        _fail(f"audit log NOT intact: {verdict.message} ({verdict.checked} records before it)")
    click.echo(f"berth: audit log intact: {verdict.message}")


@audit_group.command("export")
@click.option("--since", help="Only records from this time on (ISO 8601, UTC), e.g. 2026-11-01.")
@click.option("--output", "-o", type=click.File("w"), default="-", help="A file (default stdout).")
@instance_command
def audit_export(settings, since, output):
    """Write the records as JSON lines, oldest first, for a SIEM."""
    from app.durations import parse_time

    try:
        start = parse_time(since)
    except ValueError as exc:
        _fail(f"--since: {exc}", 2)
    count = 0
    for line in audit.export(start):
        output.write(line + "\n")
        count += 1
    click.echo(f"berth: exported {count} audit records", err=True)


@audit_group.command("prune")
@click.option(
    "--days",
    type=int,
    help="Keep this many days (default: BERTH_AUDIT_RETENTION_DAYS; 0 keeps everything).",
)
@instance_command
def audit_prune(settings, days):
    """Delete records older than the retention; the chain stays verifiable."""
    removed = audit.prune(settings.audit_retention_days if days is None else days)
    click.echo(f"berth: pruned {removed} audit records", err=True)
