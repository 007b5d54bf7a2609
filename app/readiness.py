"""Waiting until sockets have something to read, without select()'s ceiling of 1024
file descriptors: a web process holding a few hundred exec streams at once has
descriptors above it."""

from __future__ import annotations

import contextlib
import selectors


class Readable:
    """Objects with ``fileno()`` watched for input; ``wait`` returns those ready."""

    def __init__(self, *objects):
        self._selector = selectors.DefaultSelector()
        for obj in objects:
            self._selector.register(obj, selectors.EVENT_READ)

    def drop(self, obj) -> None:
        """Stop watching ``obj`` (it reached end of input)."""
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(obj)

    def wait(self, timeout: float | None) -> list:
        if not self._selector.get_map():
            return []
        return [key.fileobj for key, _ in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()

    def __enter__(self) -> Readable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
