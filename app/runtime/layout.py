"""Where Berth puts its own things inside every workspace, whatever runs it: the
paths the IDE, the SSH gateway and the keep-alive mark agree on."""

from __future__ import annotations

# The image Berth's own helpers and built-in templates start from, made on the engine
# when the worker starts (from a registry, or with mmdebstrap where none answers).
BASE_IMAGE = "berth-base:bookworm"
# Where the SSH gateway puts forwarded-agent sockets inside a workspace (a read-only bind
# of a host folder: the workspace can use the sockets, not replace them).
AGENT_SOCKET_DIR = "/run/berth-agent"
# The workspace's own small tmpfs (its keep-alive mark, a sandbox's token): Berth reads and
# writes it only through the runtime (exec), never through a host path.
KEEPALIVE_DIR = "/run/berth"
KEEPALIVE_MARK = f"{KEEPALIVE_DIR}/keepalive"
KEEPALIVE_BIN = "/usr/local/bin/berth-keepalive"
# The IDE bundle (code-server), mounted read-only where a template has the IDE.
TOOLS_MOUNT_POINT = "/opt/berth"
TOOLS_CURRENT = f"{TOOLS_MOUNT_POINT}/current"
TOOLS_MARKER = ".complete"
CODE_SERVER = f"{TOOLS_CURRENT}/bin/code-server"
CODE_SERVER_PORT = 13337
CODE_SERVER_VERSION = "4.139.1"
