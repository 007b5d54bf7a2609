"""Benchmark: lifecycle hooks, Berth's devcontainer engine against `devcontainer up`.

A config with seven hook commands over every phase (five from devcontainer.json, two
from a local Feature) on the local base image, its image already built. Measured in one
run, side by side, each round on a fresh workspace folder: create, start and run every
hook with Berth (``app.runtime.docker.up``) and with the reference CLI, and the number
of commands Berth runs in the container for it.
Run: python bench/hooks.py [rounds]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import devcontainer as dc  # noqa: E402
from app.runtime.docker import DockerRuntime  # noqa: E402
from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from app.runtime.docker.up import up  # noqa: E402
from tests import reference  # noqa: E402

TARGET = 0.6  # Berth's up at most this share of `devcontainer up`


class CountingRuntime(DockerRuntime):
    def __init__(self, client):
        super().__init__(client, "bench")
        self.runs = 0

    def run(self, container_id, argv, **options):
        self.runs += 1
        return super().run(container_id, argv, **options)


def make_workspace(root: Path) -> Path:
    ws = root / f"hooks-{uuid.uuid4().hex[:10]}"
    feature = ws / ".devcontainer" / "warm"
    feature.mkdir(parents=True)
    (feature / "devcontainer-feature.json").write_text(
        json.dumps(
            {
                "id": "warm",
                "version": "1.0.0",
                "name": "warm",
                "onCreateCommand": "echo feature on create > /tmp/feature-create",
                "postCreateCommand": "echo feature post create >> /tmp/feature-create",
            }
        )
    )
    (feature / "install.sh").write_text("#!/bin/sh\necho installed\n")
    (ws / ".devcontainer" / "devcontainer.json").write_text(
        json.dumps(
            {
                "image": BASE_IMAGE,
                "features": {"./warm": {}},
                "onCreateCommand": "echo on create > /tmp/create",
                "updateContentCommand": ["sh", "-c", "echo update >> /tmp/create"],
                "postCreateCommand": "echo post create >> /tmp/create",
                "postStartCommand": "echo start >> /tmp/starts",
                "postAttachCommand": "echo attach >> /tmp/attaches",
            }
        )
    )
    return ws


def berth_up(client, ws: Path, runtime: CountingRuntime) -> float:
    plan = dc.plan(dc.load(ws), feature_cache=ws.parent / "feature-cache")
    built = dc.build(plan, runtime)
    spec = dc.run_spec(plan, built)
    started = time.perf_counter()
    container = up(runtime, spec)
    took = time.perf_counter() - started
    container.remove(force=True, v=True)
    return took


def reference_up(cli, client, ws: Path) -> float:
    started = time.perf_counter()
    result = reference.up(cli, ws, dict(os.environ))
    took = time.perf_counter() - started
    if result.get("outcome") != "success":
        raise SystemExit(f"devcontainer up failed: {result.get('message')}")
    client.containers.get(result["containerId"]).remove(force=True, v=True)
    return took


def main(rounds: int = 3) -> None:
    client = docker.from_env(timeout=600)
    ensure_base_image(client, BASE_IMAGE)
    cli = reference.ensure_cli()
    root = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    times: dict[str, list[float]] = {"berth": [], "reference": []}
    execs: list[int] = []
    try:
        # Build the image once for each tool, outside the measurement.
        warm = make_workspace(root)
        berth_up(client, warm, CountingRuntime(client))
        reference_up(cli, client, warm)
        for _ in range(rounds):
            runtime = CountingRuntime(client)
            times["berth"].append(berth_up(client, make_workspace(root), runtime))
            execs.append(runtime.runs)
            times["reference"].append(reference_up(cli, client, make_workspace(root)))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ours, theirs = statistics.median(times["berth"]), statistics.median(times["reference"])
    ratio = ours / theirs
    print(f"\nlifecycle hooks, seven commands over five phases, {rounds} rounds (median s)")
    print(f"{'measure':<34}{'berth':>8}{'devcontainer':>14}{'ratio':>8}")
    print(f"{'up: create, start, every hook':<34}{ours:>8.3f}{theirs:>14.3f}{ratio:>7.2f}x")
    print(f"{'commands run in the container':<34}{statistics.median(execs):>8.0f}")
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"\ntarget: Berth's up <= {TARGET}x `devcontainer up`: {verdict} ({ratio:.2f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
