"""Lifecycle commands inside a running container, with the spec's once-per-container rules.

onCreate, updateContent and postCreate run once per container (a marker in the remote
user's home holds the container's creation time); postStart once per start (the marker
holds the start time); postAttach on every attach. Features' commands run before
devcontainer.json's, and the first failure stops the rest.
"""

from __future__ import annotations

import re
import shlex
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from app.devcontainer.engine import Engine
from app.devcontainer.errors import LifecycleError
from app.devcontainer.run import Hook, RunSpec
from app.devcontainer.variables import substitute

Log = Callable[[str], None]
SYSTEM_DATA = "/var/devcontainer"
# The passwd line of the user named by the script's second argument.
USER_ENTRY = 'getent passwd "$2" 2>/dev/null || grep "^$2:" /etc/passwd\n'
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ONCE_PER_CONTAINER = ("onCreateCommand", "updateContentCommand", "postCreateCommand")


@dataclass
class ExecResult:
    exit_code: int
    output: str


def exec_in(engine: Engine, container_id: str, command: list[str], **options) -> ExecResult:
    """Run ``command`` in the container (no tty; options: user, env, workdir, and
    on_output for each line as it comes)."""
    return ExecResult(*engine.run(container_id, command, **options))


class Session:
    """The remote user's view of one container: its environment and working folder."""

    def __init__(
        self,
        engine: Engine,
        container_id: str,
        spec: RunSpec,
        on_log: Log = lambda line: None,
    ):
        self.engine = engine
        self.container_id = container_id
        self.spec = spec
        self.on_log = on_log
        self._env: dict[str, str] | None = None
        self._marker_folder: str | None = None  # found by due_hooks
        self._passwd: ExecResult | None = None  # found by patch_system_config
        self._facts: dict | None = None
        self._probed: dict[str, str] | None = None  # by due_hooks, when asked to probe

    def run_as_root(self, script: str, *args: str) -> ExecResult:
        return exec_in(
            self.engine, self.container_id, ["/bin/sh", "-c", script, "-", *args], user="root"
        )

    def facts(self) -> dict:
        """The started container's environment, creation and start times (one look)."""
        if self._facts is None:
            self._facts = self.engine.facts(self.container_id)
        return self._facts

    def container_env(self) -> dict[str, str]:
        return self.facts()["env"]

    def patch_system_config(self) -> None:
        """Once per container, as the reference does: keep the container's variables in
        /etc/environment, and stop /etc/profile from resetting PATH for login shells.
        One exec; it does nothing where root cannot write (a read-only root file system)."""
        script = (
            'once() { ( test ! -f "$1" && set -o noclobber && mkdir -p "$(dirname "$1")" '
            '&& { > "$1" ; } ) 2> /dev/null; }\n'
            f"if once {SYSTEM_DATA}/.patchEtcEnvironmentMarker; then "
            "printf '%s\\n' \"$1\" >> /etc/environment; fi\n"
            f"if once {SYSTEM_DATA}/.patchEtcProfileMarker; then "
            "sed -i -E 's/((^|\\s)PATH=)([^\\$]*)$/\\1${PATH:-\\3}/g' /etc/profile || true; fi\n"
            + USER_ENTRY
        )
        lines = "".join(f'\n{k}="{v}"' for k, v in self.container_env().items())
        # The same exec looks up the remote user's shell, for the environment probe.
        self._passwd = self.run_as_root(script, lines, self.spec.remote_user)

    def _shell(self) -> str:
        found = self._passwd or self.run_as_root(USER_ENTRY, "", self.spec.remote_user)
        last = (found.output.strip().splitlines() or [""])[-1]  # after any sed complaint
        fields = last.split(":")
        return fields[6] if found.exit_code == 0 and len(fields) >= 7 and fields[6] else "/bin/sh"

    def _probe_command(self) -> tuple[list[str], str] | None:
        """The userEnvProbe's command and the fresh marker it prints the environment
        between (a profile may print more); None for "none"."""
        mode = self.spec.user_env_probe
        if mode == "none":
            return None
        flag = {
            "loginInteractiveShell": "-lic",
            "loginShell": "-lc",
            "interactiveShell": "-ic",
        }.get(mode, "-c")
        marker = uuid.uuid4().hex
        script = f"echo -n {marker}; cat /proc/self/environ; echo -n {marker}"
        return [self._shell(), flag, script], marker

    def _probe(self) -> dict[str, str]:
        if self._probed is not None:
            return self._probed
        probe = self._probe_command()
        if probe is None:
            return {}
        command, marker = probe
        found = exec_in(self.engine, self.container_id, command, user=self.spec.remote_user)
        return self._parse_probe(marker, found.output)

    def _parse_probe(self, marker: str, output: str) -> dict[str, str]:
        parts = output.split(marker)
        if len(parts) < 3:
            mode = self.spec.user_env_probe
            self.on_log(f"userEnvProbe ({mode}) printed nothing usable; using the container env")
            return {}
        env = {}
        for item in parts[1].split("\0"):
            key, sep, value = item.partition("=")
            if sep and key:
                env[key] = value
        # Variables only an interactive shell of the probe itself has are not the user's.
        for transient in ("SHLVL", "_", "PWD", "OLDPWD"):
            env.pop(transient, None)
        return env

    @property
    def probed(self) -> bool:
        """Whether ``environment()`` was worked out already (a hook ran)."""
        return self._env is not None

    def environment(self) -> dict[str, str]:
        """The probed user environment plus remoteEnv, with ${containerEnv:...} resolved."""
        if self._env is None:
            env = self._probe()
            ctx = self.spec.context.with_container_env(self.container_env())
            for key, value in substitute(self.spec.remote_env, ctx).items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            self._env = env
        return self._env

    def workdir(self) -> str | None:
        folder = self.spec.workspace_folder
        found = exec_in(
            self.engine, self.container_id, ["test", "-d", folder], user=self.spec.remote_user
        )
        return folder if found.exit_code == 0 else None

    def run_command(self, command, label: str, on_output: Log | None = None) -> ExecResult:
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else _words(command)
        return exec_in(
            self.engine,
            self.container_id,
            argv,
            user=self.spec.remote_user,
            env=self.environment(),
            workdir=self.workdir(),
            on_output=on_output if on_output is not None else self.on_log,
        )

    def _run_parallel(self, hook_name: str, hook: Hook) -> None:
        results: dict[str, ExecResult] = {}

        def worker(name, command):
            results[name] = self.run_command(command, name, on_output=lambda line: None)

        threads = [
            threading.Thread(target=worker, args=item) for item in hook.command.items() if item[1]
        ]
        for name, command in hook.command.items():
            self.on_log(f"Running {name} of {hook_name} from {hook.origin}: {_show(command)}")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, result in results.items():
            for line in result.output.splitlines():
                self.on_log(f"[{name}] {line}")
        failed = [(name, r) for name, r in results.items() if r.exit_code != 0]
        if failed:
            name, result = failed[0]
            raise LifecycleError(
                f"{hook_name} ({name})", hook.origin, result.exit_code, result.output
            )

    def due_hooks(self, markers: list[tuple[str, str, bool]], probe: bool = False) -> list[str]:
        """Which of (hook, marker value, has commands) are due, in one exec. The reference
        rewrites a hook's marker just before running it, so the marker of a hook with
        commands is only read here and written when its phase runs; one with nothing to
        run is written straight away. With ``probe``, the same exec then makes the
        userEnvProbe (as the user, like the markers), for ``environment()``."""
        script = (
            'if mkdir -p "$HOME/.devcontainer" 2>/dev/null; then\n'
            "printf '%s\\0' \"$HOME/.devcontainer\"\n"
            'for item in "$@"; do name=${item%%=*}; rest=${item#*=}; write=${rest%%=*}; '
            'value=${rest#*=}; file="$HOME/.devcontainer/.${name}Marker"; '
            'content="$(cat "$file" 2>/dev/null || echo ENOENT)"; '
            'if [ "$content" != "$value" ]; then '
            'if [ "$write" = 1 ]; then echo "$value" 2>/dev/null > "$file"; '
            'else echo "$name"; fi; fi; done\n'
            "fi\n"
        )
        found = self._probe_command() if probe and self._probed is None else None
        nonce = uuid.uuid4().hex
        ended = f"\x1e{nonce}\n"
        if found is not None:
            # The marker loop's own variables are not exported: the probe sees none. Its
            # stderr (an interactive bash without a terminal always complains) goes: the
            # engine copies the two streams apart, and it could come before the markers.
            script += f"printf '\\036%s\\n' {nonce}\nexec {shlex.join(found[0])} 2>/dev/null\n"
        args = [f"{hook}={0 if commands else 1}={value}" for hook, value, commands in markers]
        result = exec_in(
            self.engine,
            self.container_id,
            ["/bin/sh", "-c", script, "-", *args],
            user=self.spec.remote_user,
        )
        output = result.output
        if found is not None:
            output, _, probed = output.partition(ended)
            self._probed = self._parse_probe(found[1], probed)
        # The user's own HOME (before remoteEnv, which may set another), ended by a NUL
        # (a HOME may hold a newline); then the due hooks, one a line. Anything else the
        # container printed is no hook name.
        folder, ended_folder, due = output.partition("\0")
        if not ended_folder:
            return []
        self._marker_folder = folder
        known = {hook for hook, _, _ in markers}
        return [line for line in due.splitlines() if line in known]

    def run_phase(self, hook_name: str, hooks: list[Hook], marker: str | None = None) -> bool:
        """Run one phase's commands in order, the first failure stopping the rest; with a
        ``marker``, write it first. Commands in a row take one exec between them, with
        the folder check and the marker; a parallel (object) command runs as its own
        execs. False when the marker could not be written (the phase did not run)."""
        batch: list[Hook] = []
        for hook in hooks:
            if not hook.command:
                continue
            if isinstance(hook.command, dict):
                if not self._run_batch(hook_name, batch, marker):
                    return False
                batch, marker = [], None
                self._run_parallel(hook_name, hook)
            else:
                batch.append(hook)
        return self._run_batch(hook_name, batch, marker)

    def _marker_file(self, hook_name: str, marker: str | None) -> str:
        if marker is None:
            return ""
        if self._marker_folder is None:
            raise RuntimeError("due_hooks finds the marker folder before a phase runs")
        return f"{self._marker_folder}/.{hook_name}Marker"

    def _run_each(self, hook_name: str, hooks: list[Hook], marker: str | None) -> bool:
        """The phase with an exec per command, as before batching: for an environment
        with a name no shell passes on to its children (``A-B``, ``BASH_FUNC_f%%``)."""
        if marker is not None:
            claimed = exec_in(
                self.engine,
                self.container_id,
                [
                    "/bin/sh",
                    "-c",
                    'echo "$2" > "$1"',
                    "-",
                    self._marker_file(hook_name, marker),
                    marker,
                ],
                user=self.spec.remote_user,
            )
            if claimed.exit_code != 0:
                return False
        for hook in hooks:
            self.on_log(f"Running the {hook_name} from {hook.origin}: {_show(hook.command)}")
            result = self.run_command(hook.command, hook_name)
            if result.exit_code != 0:
                raise LifecycleError(hook_name, hook.origin, result.exit_code, result.output)
        return True

    def _run_batch(self, hook_name: str, hooks: list[Hook], marker: str | None) -> bool:
        if not hooks and marker is None:
            return True
        if hooks and not all(SHELL_NAME.fullmatch(name) for name in self.environment()):
            return self._run_each(hook_name, hooks, marker)
        nonce = uuid.uuid4().hex
        lines = [
            f"mark() {{ printf '\\036{nonce} %s\\n' \"$*\"; }}",
            'if [ -n "$1" ]; then',
            '    echo "$2" > "$1" 2>/dev/null || { mark unclaimed; exit 0; }',
            "fi",
            "start=$(pwd)",
            # A relative folder that starts with a dash is no option of cd.
            'case "$3" in /*) folder=$3 ;; *) folder=./$3 ;; esac',
        ]
        for index, hook in enumerate(hooks):
            command = hook.command
            # An array is a program and its arguments, as an exec of its own would run
            # them: exec in a subshell, so no built-in, function or assignment of this
            # script's shell takes them. Their stderr joins stdout to keep the order.
            argv = ["/bin/sh", "-c", command] if isinstance(command, str) else _words(command)
            run = f"(exec {shlex.join(argv)}) 2>&1"
            lines += [
                f"mark run {index}",
                # The folder may appear during the phase (a command cloning into it).
                'if [ -d "$folder" ]; then cd "$folder" 2>/dev/null || cd "$start"; '
                'else cd "$start"; fi',
                run,
                f"code=$?; if [ $code -ne 0 ]; then mark failed {index} $code; exit $code; fi",
            ]
        marker_file = self._marker_file(hook_name, marker)
        state = {"index": None, "output": [], "failed": None, "unclaimed": False}

        def on_output(line: str) -> None:
            tag = f"\x1e{nonce} "
            at = line.find(tag)
            if at < 0:
                state["output"].append(line)
                self.on_log(line)
                return
            if line[:at]:
                state["output"].append(line[:at])
                self.on_log(line[:at])
            # A command can read the script (and so the nonce) from /proc: a mark that
            # names no command of this batch is taken for output, never trusted further.
            word, arg = [*line[at + len(tag) :].split(), "", ""][:2]
            index = int(arg) if re.fullmatch(r"[0-9]{1,6}", arg) else None
            index = index if index is not None and index < len(hooks) else None
            if word == "unclaimed" and state["index"] is None:
                state["unclaimed"] = True
            elif word == "run" and index is not None:
                state["index"], state["output"] = index, []
                hook = hooks[index]
                self.on_log(f"Running the {hook_name} from {hook.origin}: {_show(hook.command)}")
            elif word == "failed" and index is not None:
                state["failed"] = index
            else:
                state["output"].append(line[at:])
                self.on_log(line[at:])

        script = "\n".join(lines)
        env = self.environment() if hooks else None
        result = exec_in(
            self.engine,
            self.container_id,
            ["/bin/sh", "-c", script, "-", marker_file, marker or "", self.spec.workspace_folder],
            user=self.spec.remote_user,
            env=env,
            on_output=on_output,
        )
        if state["unclaimed"] or (result.exit_code != 0 and not hooks):
            return False  # the marker was not written: the phase is not this run's
        if result.exit_code != 0:
            # Without a "failed" mark the exec itself ended (the container stopped, say):
            # the command that was running is the one that failed.
            index = state["failed"] if state["failed"] is not None else state["index"] or 0
            raise LifecycleError(
                hook_name, hooks[index].origin, result.exit_code, "\n".join(state["output"])
            )
        return True


def _words(command: list) -> list[str]:
    """An array command's words (a number in the array is its text)."""
    return [str(word) for word in command]


def _show(command) -> str:
    return command if isinstance(command, str) else shlex.join(_words(command))


def run_lifecycle(
    engine: Engine,
    container_id: str,
    spec: RunSpec,
    on_log: Log = lambda line: None,
    attach: bool = True,
    session: Session | None = None,
    phase: Callable[[str], AbstractContextManager] = lambda hook: nullcontext(),
    *,
    set_up_before: bool = False,
) -> list[str]:
    """Run the hooks due now in a started container; return the names of those that ran.
    A caller that wants the person's environment afterwards passes its own ``session``
    (its ``environment()`` is then probed at most once, in the exec that reads the
    markers); ``phase(hook)`` wraps each phase that runs commands (a caller's timing).
    ``set_up_before``: the caller set this very container up already, so its system
    files were patched then (the patch is once per container) and its environment is
    known: neither is looked at again."""
    session = session or Session(engine, container_id, spec, on_log)
    if not set_up_before:
        session.patch_system_config()
    facts = session.facts()
    due = [(hook, facts["created"]) for hook in ONCE_PER_CONTAINER]
    due.append(("postStartCommand", facts["started_at"]))
    ran = []
    markers = dict(due)
    # Any hook with commands needs the environment; a first setup records it.
    probe = not set_up_before or any(spec.hooks[hook] for hook in (*markers, "postAttachCommand"))
    # Markers are written even when there is nothing to run, as the reference does.
    found = session.due_hooks([(h, v, bool(spec.hooks[h])) for h, v in due], probe=probe)
    for hook_name in found:
        with phase(hook_name) if spec.hooks[hook_name] else nullcontext():
            if session.run_phase(hook_name, spec.hooks[hook_name], markers[hook_name]):
                ran.append(hook_name)
    if attach and spec.hooks["postAttachCommand"]:
        with phase("postAttachCommand"):
            session.run_phase("postAttachCommand", spec.hooks["postAttachCommand"])
        ran.append("postAttachCommand")
    return ran
