"""``berth web``: the Flask app under gunicorn, configured from Berth's settings.

``berth web`` sets the instance up and then replaces itself with this module run on its
own (``exec_master``): gunicorn's master then holds gunicorn and the settings only
(about 25 MiB, not the 48 MiB of the set-up), and its worker loads the app."""

import os
import sys

from gunicorn.app.base import BaseApplication

from app.config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, bind: str):
        self.settings = settings
        self.bind = bind
        super().__init__()

    def load_config(self):
        # One process with threads: the login rate limiter keeps its counters in memory,
        # and a small team's traffic does not need more than one process.
        self.cfg.set("bind", [self.bind])
        # A unix socket only Berth's own user may connect to: anyone else could skip Caddy
        # and say what X-Forwarded-For they like.
        self.cfg.set("umask", 0o177)
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        # The short requests' threads, and the long-lived ones' own (app.slots): those can
        # never take the threads pages and forward_auth need.
        self.cfg.set("threads", self.settings.web_threads + self.settings.web_long_requests)
        self.cfg.set("graceful_timeout", 10)
        # Longer than Caddy keeps an idle connection to us (30 s), so Caddy, not
        # gunicorn, closes it: a POST written into a connection gunicorn had just closed
        # would fail with a 502 (Caddy retries only idempotent requests).
        self.cfg.set("keepalive", 75)
        self.cfg.set("timeout", 60)
        self.cfg.set("proc_name", "berth-web")
        self.cfg.set("loglevel", self.settings.log_level)
        self.cfg.set("accesslog", "-" if self.settings.log_level == "debug" else None)
        if "control_socket_disable" in self.cfg.settings:
            # Newer gunicorn opens a control socket at one fixed path per user, which
            # several Berth instances on one host would fight over; Berth does not use it.
            self.cfg.set("control_socket_disable", True)

    def load(self):
        from app.factory import create_app

        return create_app(self.settings)


def run(settings: Settings, bind: str) -> None:
    """Serve until gunicorn is told to stop (SIGTERM or SIGINT)."""
    _Gunicorn(settings, bind).run()


def exec_master(settings: Settings, bind: str) -> None:
    """Become gunicorn's master for ``bind`` (same pid), its settings read anew from the
    environment, the data dir included."""
    os.environ["BERTH_DATA_DIR"] = str(settings.data_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "app.processes.web", bind])  # noqa: S606


if __name__ == "__main__":
    run(Settings.load({}), sys.argv[1])
