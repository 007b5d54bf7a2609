"""Benchmark: Berth's devcontainer engine against `devcontainer build` (the reference CLI).

A config with two local Features on the local base image. Measured in one run, side by side:
cold build (nothing cached for this config), cache-hit build (same inputs again), and
plan-only (read + resolve, no Docker work). Run: python bench/devcontainer_build.py [rounds]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import devcontainer as dc  # noqa: E402
from app.runtime.docker import DockerRuntime
from app.runtime.docker.base_image import BASE_IMAGE, ensure_base_image  # noqa: E402
from tests import reference  # noqa: E402


def make_workspace(root: Path, salt: str) -> Path:
    ws = root / f"bench-{salt}"
    for name, after in (("alpha", []), ("beta", ["./alpha"])):
        folder = ws / ".devcontainer" / name
        folder.mkdir(parents=True)
        (folder / "devcontainer-feature.json").write_text(
            json.dumps(
                {
                    "id": name,
                    "version": "1.0.0",
                    "name": name,
                    "installsAfter": after,
                    "options": {"level": {"type": "string", "default": "1"}},
                }
            )
        )
        (folder / "install.sh").write_text(
            f"#!/bin/sh\nset -e\necho {salt} > /usr/local/share/{name}.txt\n"
        )
    (ws / ".devcontainer" / "devcontainer.json").write_text(
        json.dumps({"image": BASE_IMAGE, "features": {"./alpha": {}, "./beta": {"level": "2"}}})
    )
    return ws


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def berth_build(ws: Path, client) -> None:
    plan = dc.plan(dc.load(ws), feature_cache=ws / "cache")
    dc.build(plan, DockerRuntime(client, "test"))


def reference_build(cli, ws: Path) -> None:
    subprocess.run(
        [
            *cli,
            "build",
            "--workspace-folder",
            str(ws),
            "--buildkit",
            "never",
            "--image-name",
            f"bench-ref-{ws.name.lower()}",
        ],
        check=True,
        capture_output=True,
    )


def main(rounds: int = 3) -> None:
    client = docker.from_env(timeout=600)
    ensure_base_image(client, BASE_IMAGE)
    cli = reference.ensure_cli()
    root = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    rows: dict[str, dict[str, list[float]]] = {
        "cold build": {"berth": [], "reference": []},
        "cache-hit build": {"berth": [], "reference": []},
        "plan only": {"berth": [], "reference": []},
    }
    try:
        for _ in range(rounds):
            for tool in ("berth", "reference"):
                ws = make_workspace(root, uuid.uuid4().hex[:10])
                build = (
                    (lambda ws=ws: berth_build(ws, client))
                    if tool == "berth"
                    else (lambda ws=ws: reference_build(cli, ws))
                )
                rows["cold build"][tool].append(timed(build))
                rows["cache-hit build"][tool].append(timed(build))
                if tool == "berth":
                    rows["plan only"][tool].append(
                        timed(lambda ws=ws: dc.plan(dc.load(ws), feature_cache=ws / "cache"))
                    )
                else:
                    rows["plan only"][tool].append(
                        timed(
                            lambda ws=ws: subprocess.run(
                                [
                                    *cli,
                                    "read-configuration",
                                    "--workspace-folder",
                                    str(ws),
                                    "--include-features-configuration",
                                ],
                                check=True,
                                capture_output=True,
                            )
                        )
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for image in client.images.list():
            if any(t.startswith("bench-ref-") for t in image.tags):
                client.images.remove(image.id, force=True)

    print(f"\ndevcontainer build, two local Features, {rounds} rounds (median seconds)")
    print(f"{'measure':<18}{'berth':>10}{'devcontainer':>14}{'ratio (ref/berth)':>20}")
    for measure, by_tool in rows.items():
        ours, theirs = statistics.median(by_tool["berth"]), statistics.median(by_tool["reference"])
        print(f"{measure:<18}{ours:>10.3f}{theirs:>14.3f}{theirs / ours:>19.1f}x")
    hit_ratio = statistics.median(rows["cache-hit build"]["reference"]) / statistics.median(
        rows["cache-hit build"]["berth"]
    )
    print(
        f"\ntarget: cache hit at least 5x faster than `devcontainer build`: "
        f"{'met' if hit_ratio >= 5 else 'NOT met'} ({hit_ratio:.1f}x)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
