"""The environment a person's processes get in a workspace (the userEnvProbe result and
remoteEnv), recorded by the worker at each start: SSH sessions, API execs and the IDE
read it, as devcontainer exec and VS Code apply them."""

import peewee
from playhouse.migrate import migrate

VERSION = 21
DESCRIPTION = "the environment of a person's processes in a workspace"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "remote_env", peewee.TextField(null=True)))
