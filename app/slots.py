"""Slots for long-lived requests (an exec that runs for an hour, a followed log, a create
that waits until the workspace runs, a large file): they are served by threads of their
own, at most ``limit`` at once and ``per_user`` for one person, so they can never take
the threads that pages, the API's short calls and the IDE's forward_auth need.

The web server runs ``short + limit`` threads (app.processes.web); a request past either
bound is refused at once with 503 and says why, instead of queueing behind the others.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable

from flask import current_app, g, request
from flask_login import current_user
from werkzeug.exceptions import ServiceUnavailable


class Slots:
    def __init__(self, limit: int, per_user: int):
        self.limit, self.per_user = limit, per_user
        self._lock = threading.Lock()
        self._taken = 0
        self._by_user: dict[str, int] = {}

    def take(self, who: str) -> Callable[[], None] | None:
        """A slot for ``who``, as the function that gives it back; None when full."""
        with self._lock:
            mine = self._by_user.get(who, 0)
            if self._taken >= self.limit or mine >= self.per_user:
                return None
            self._taken += 1
            self._by_user[who] = mine + 1
        given_back = threading.Event()

        def give_back() -> None:
            if given_back.is_set():
                return
            given_back.set()
            with self._lock:
                self._taken -= 1
                left = self._by_user.get(who, 1) - 1
                if left > 0:
                    self._by_user[who] = left
                else:
                    self._by_user.pop(who, None)

        return give_back

    @property
    def taken(self) -> int:
        return self._taken


def _who() -> str:
    token = g.get("api_token")
    if token is not None:
        return token.user.username
    if current_user.is_authenticated:
        return current_user.username
    return f"address:{request.remote_addr}"


@contextlib.contextmanager
def held():
    """A long-request slot for the block (a request that waits inside its view)."""
    slots: Slots = current_app.extensions["berth_slots"]
    give_back = slots.take(_who())
    if give_back is None:
        raise _full(slots)
    try:
        yield
    finally:
        give_back()


def _full(slots: Slots) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"too many long-running requests (exec, logs, waits, files) at once: at most "
        f"{slots.per_user} per person and {slots.limit} on this server; try again when one "
        "has ended"
    )


def long_lived(view):
    """Serve ``view`` in a long-request slot, held until its response (a stream too)
    has been sent."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        slots: Slots = current_app.extensions["berth_slots"]
        give_back = slots.take(_who())
        if give_back is None:
            raise _full(slots)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            give_back()
            raise
        response.call_on_close(give_back)
        return response

    return wrapper


def init_app(app, settings) -> None:
    app.extensions["berth_slots"] = Slots(settings.web_long_requests, settings.web_long_per_user)
