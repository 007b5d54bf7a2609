"""The devcontainer engine: devcontainer.json in, an image and a run plan out.

No Flask, and no container engine: it reaches one only through the small Engine
protocol (app.devcontainer.engine) a runtime provides. The public API:

- ``load(folder, config_path=None)`` -> DevcontainerConfig (JSONC, validated)
- ``plan(config, local_env=..., approvals=...)`` -> Plan (what to build, Features ordered)
- ``build(plan, engine, on_log)`` -> BuildResult (a content-addressed image)
- ``run_spec(plan, result, approvals=..., workspace_volume=...)`` -> RunSpec
- ``run_lifecycle(engine, container_id, spec)``
"""

from app.devcontainer.build import BuildResult, build
from app.devcontainer.config import DevcontainerConfig, discover, load
from app.devcontainer.engine import Engine
from app.devcontainer.errors import (
    BuildError,
    ConfigError,
    DevcontainerError,
    FeatureError,
    LifecycleError,
    PolicyError,
)
from app.devcontainer.hooks import Session, run_lifecycle
from app.devcontainer.plan import Plan, plan
from app.devcontainer.policy import Approvals
from app.devcontainer.run import RunSpec, run_spec

__all__ = [
    "Approvals",
    "BuildError",
    "BuildResult",
    "ConfigError",
    "DevcontainerConfig",
    "DevcontainerError",
    "Engine",
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
]
