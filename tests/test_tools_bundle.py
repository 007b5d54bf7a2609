"""The tools bundle on a shared engine: one builder at a time under a lock the engine
holds, a new version switched to at once, and the files an IDE runs from never deleted.
A small stand-in script plays the builder here (the real one takes minutes)."""

from __future__ import annotations

import contextlib
import io
import secrets
import threading

import docker
import pytest

from app.runtime.docker import tools, tools_archive
from tests.services import wait_until

# Writes a version folder like build-tools.sh does, slowly enough for a race, and counts
# how many builders ran at once in a file of the volume.
STAND_IN = r"""
set -eu
root=/opt/berth/versions/$VERSION
log=/opt/berth/builders.log
echo start >> $log
[ "$(grep -c start $log)" -eq "$(( $(grep -c end $log) + 1 ))" ] || echo OVERLAP >> $log
rm -rf "$root"; mkdir -p "$root/bin"
sleep 3
printf '#!/bin/sh\necho %s\n' "$VERSION" > "$root/bin/code-server"
chmod 755 "$root/bin/code-server"
touch "$root/$MARKER"
ln -sfn "versions/$VERSION" /opt/berth/current.new; mv -T /opt/berth/current.new /opt/berth/current
echo end >> $log
"""


@pytest.fixture
def volume(docker_client):
    name = f"berth-test-tools-{secrets.token_hex(4)}"
    yield name
    # The listing's own labels: a probe (removed by the engine when it exits) may be gone
    # by the time each one is looked at.
    for found in docker_client.api.containers(all=True, filters={"label": "berth.tools"}):
        if (found.get("Labels") or {}).get("berth.tools.version", "").startswith("test-"):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_container(found["Id"], force=True)
    remove_when_free(docker_client, name)


def remove_when_free(client, name: str) -> None:
    """Remove a volume once the probes that read it (removed by the engine after they
    exit, a moment later) let go of it."""
    wait_until(lambda: _removed(client, name), 30, what=f"volume {name} removed")


def _removed(client, name: str) -> bool:
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            return False
        if exc.status_code != 404:
            raise
    return True


def _read(client, volume: str, script: str) -> str:
    return client.containers.run(
        "berth-base:bookworm",
        ["sh", "-c", script],
        volumes={volume: {"bind": "/opt/berth", "mode": "ro"}},
        remove=True,
        network_disabled=True,
    ).decode()


def test_builders_on_one_engine_take_turns_and_switch_versions_atomically(
    docker_client, base_image, volume
):
    first = f"test-{secrets.token_hex(3)}"
    errors = []

    def build(version: str) -> None:
        client = docker.from_env(timeout=120)
        try:
            tools.ensure(client, volume=volume, version=version, script=STAND_IN, instance="t")
        except Exception as exc:  # noqa: BLE001  (shown by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(first,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    log = _read(docker_client, volume, "cat /opt/berth/builders.log")
    assert "OVERLAP" not in log and log.count("start") == 1  # one built, the others waited
    assert tools.ready(docker_client, volume, first)
    # A newer version: built beside the old one, then current; the old files stay.
    second = f"test-{secrets.token_hex(3)}"
    build(second)
    assert errors == []
    seen = _read(
        docker_client,
        volume,
        f"readlink /opt/berth/current; /opt/berth/current/bin/code-server; "
        f"ls /opt/berth/versions/{first}/bin",
    )
    assert seen.split() == [f"versions/{second}", second, "code-server"]
    assert docker_client.containers.list(all=True, filters={"name": tools.BUILDER}) == []


def test_a_bundle_exported_to_a_file_is_imported_on_another_engine(
    docker_client, base_image, volume, tmp_path
):
    """What a host that cannot reach npm does: ``berth tools export`` where the bundle
    was built, ``berth tools import`` (or install.sh --tools-bundle) there. Here the
    second volume stands for the other engine, backed by a folder as in the appliance."""
    version = f"test-{secrets.token_hex(3)}"
    tools.ensure(docker_client, volume=volume, version=version, script=STAND_IN, instance="t")
    archive = tmp_path / "bundle.tar"
    with archive.open("wb") as out:
        tools.export(docker_client, out, volume=volume, version=version)
    tools_archive.check(archive, version)

    other, folder = f"{volume}-other", tmp_path / "engine-dir"
    folder.mkdir()
    lines: list[str] = []
    try:
        assert tools.import_archive(
            docker_client, archive, lines.append, engine_dir=str(folder), volume=other,
            version=version,
        )  # fmt: skip
        assert f"tools bundle {version} is current" in lines
        assert tools.ready(docker_client, other, version)
        assert _read(docker_client, other, "/opt/berth/current/bin/code-server") == version + "\n"
        # The files are in the folder that backs the volume, nothing half-copied beside.
        assert sorted(p.name for p in folder.iterdir()) == ["current", "versions"]
        # A second import of the same version changes nothing.
        assert not tools.import_archive(docker_client, archive, volume=other, version=version)
        # This Berth's own version is not in that archive: refused, naming both.
        with pytest.raises(
            tools_archive.ArchiveError, match=f"holds '{version}'.*needs the bundle"
        ):
            tools.import_archive(docker_client, archive, volume=other)
    finally:
        remove_when_free(docker_client, other)
    assert docker_client.containers.list(all=True, filters={"name": tools.BUILDER}) == []


def test_export_refuses_an_unfinished_bundle(docker_client, base_image, volume, tmp_path):
    docker_client.volumes.create(volume)
    with pytest.raises(tools.ToolsError, match="not built on this engine yet"):
        tools.export(docker_client, io.BytesIO(), volume=volume, version="test-none")
