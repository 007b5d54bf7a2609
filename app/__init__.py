"""Berth: a self-hosted Cloud Development Environment appliance for one Docker host.

This package's top level stays free of web imports on purpose: the devcontainer engine
and the runtime (app.runtime) live under it and must be importable without Flask.
"""

__version__ = "0.1.0"
