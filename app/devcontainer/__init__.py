"""The devcontainer engine: devcontainer.json in, an image and a run plan out.

No Flask here. The public API:

- ``load(folder, config_path=None)`` -> DevcontainerConfig (JSONC, validated)
- ``plan(config, local_env=..., approvals=...)`` -> Plan (what to build, Features ordered)
- ``build(plan, docker_client, on_log)`` -> BuildResult (a content-addressed image)
- ``run_spec(plan, result, approvals=..., workspace_volume=...)`` -> RunSpec
- ``run_lifecycle(client, container_id, spec)`` / ``up(client, spec)``
"""

from app.devcontainer.build import BuildResult, build
from app.devcontainer.config import DevcontainerConfig, discover, load
from app.devcontainer.errors import (
    BuildError,
    ConfigError,
    DevcontainerError,
    FeatureError,
    LifecycleError,
    PolicyError,
)
from app.devcontainer.lifecycle import Session, run_lifecycle
from app.devcontainer.plan import Plan, plan
from app.devcontainer.policy import Approvals
from app.devcontainer.run import RunSpec, run_spec
from app.devcontainer.up import up

__all__ = [
    "Approvals",
    "BuildError",
    "BuildResult",
    "ConfigError",
    "DevcontainerConfig",
    "DevcontainerError",
    "FeatureError",
    "LifecycleError",
    "Plan",
    "PolicyError",
    "RunSpec",
    "Session",
    "build",
    "discover",
    "load",
    "plan",
    "run_lifecycle",
    "run_spec",
    "up",
]
