"""The names of the Docker runtime's objects, without an engine."""

from __future__ import annotations

import secrets

from app.runtime import WorkspaceRef
from app.runtime.docker import names


def test_bridge_names_fit_and_never_collide_within_an_instance():
    """Linux takes 15 characters for an interface name; an 8-hex instance id leaves no
    room for the workspace id itself, so a cut name made workspace 123 share workspace
    12's bridge (and its network could not be made)."""
    instance = secrets.token_hex(4)
    seen = {}
    for ws_id in range(1, 20001):
        name = names.bridge_name(WorkspaceRef(instance, ws_id, "ann", f"w{ws_id}"))
        assert len(name) <= 15 and name.startswith(names.BRIDGE_PREFIX), name
        assert name not in seen, (ws_id, seen.get(name))
        seen[name] = ws_id
    # Another instance on the engine gets other names for the same ids.
    other = secrets.token_hex(4)
    assert names.bridge_name(WorkspaceRef(other, 12, "ann", "w")) != names.bridge_name(
        WorkspaceRef(instance, 12, "ann", "w")
    )
    # And the same name every time (several processes make a network at once).
    assert names.bridge_name(WorkspaceRef(instance, 7, "ann", "w")) == names.bridge_name(
        WorkspaceRef(instance, 7, "bob", "x")
    )
