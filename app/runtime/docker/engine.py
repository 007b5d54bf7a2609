"""Reaching the Docker engine: a client, and waiting for an engine that is not up yet
with one line that says where Berth looks and how to start it (not a traceback per try)."""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import requests

REMIND_SECONDS = 60.0


def how_to_start(docker_host: str) -> str:
    return (
        f"no Docker engine answers at {docker_host}; start it (`systemctl start docker`, or "
        "`dockerd &` where there is no systemd; install it with `apt-get install docker.io`), "
        "or point BERTH_DOCKER_HOST at a running one"
    )


def answers(docker_host: str, timeout: int = 5) -> bool:
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001  (docker-py raises several unrelated types for "down")
        return False


def wait_for(
    docker_host: str,
    say: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
    poll: float = 1.0,
) -> bool:
    """Return once the engine answers (True), or when ``stop()`` says so (False). Says
    why it waits once, then again every minute."""
    said_at = None
    while not answers(docker_host):
        now = time.monotonic()
        if said_at is None or now - said_at >= REMIND_SECONDS:
            say(f"berth: {how_to_start(docker_host)}; waiting for it")
            said_at = now
        if stop():
            return False
        time.sleep(poll)
    if said_at is not None:
        say(f"berth: the Docker engine at {docker_host} answers")
    return True


def describe_failure(exc: BaseException, docker_host: str) -> str | None:
    """How to start the engine, when ``exc`` is a failure to reach it and the engine does
    not answer now (one line says so better than a traceback); None for anything else."""
    if not isinstance(exc, docker.errors.DockerException | requests.exceptions.ConnectionError):
        return None
    return None if answers(docker_host) else how_to_start(docker_host)
