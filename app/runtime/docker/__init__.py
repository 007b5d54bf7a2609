"""The Docker runtime (app.runtime.Runtime on one Docker engine), split by concern:
``spec`` (the hardened container, a pure function), ``networks`` (bridges and the host
firewall), ``volumes``, ``exec`` (commands, files, tunnels), ``images`` (builds),
``control`` (reaching processes where the engine's are not visible), and ``runtime``,
which puts them together."""

from app.runtime.docker.runtime import DockerRuntime, connect, refused

__all__ = ["DockerRuntime", "connect", "refused"]
