"""The engine's control container runs what Berth asks in the engine's pid namespace:
the destination of a tunnel must never become anything but a loopback TCP connection
(socat reads options and other address kinds from the same string), and a process that
is not the workspace's must never be taken for it."""

from __future__ import annotations

import os

import pytest

from app.runtime.docker.control import ControlError, EngineControl, _address


@pytest.mark.parametrize(
    "host, port",
    [
        ("8.8.8.8", 53),  # not the workspace's
        ("169.254.169.254", 80),  # a cloud's metadata service
        ("240.0.0.1", 80),  # reserved, and no Docker network's
        ("255.255.255.255", 80),
        ("0.0.0.0", 80),  # noqa: S104  (refused, not bound)
        ("localhost", 80),  # names are mapped by the gateway before; never here
        ("127.0.0.1,fork", 80),  # socat options
        ("127.0.0.1:22!!EXEC:sh", 80),
        ("EXEC:/bin/sh", 1),
        ("127.0.0.1", 0),
        ("127.0.0.1", 65536),
        ("127.0.0.1", "22,fork"),
        ("127.0.0.1", True),  # an int subclass
        ("::1]:22,fork,[::1", 22),
    ],
)
def test_only_a_loopback_address_and_a_port_reach_socat(host, port):
    with pytest.raises(ControlError):
        _address(host, port)


def test_loopback_destinations_become_plain_tcp_addresses():
    assert _address("127.0.0.1", 8000) == "TCP4:127.0.0.1:8000"
    assert _address("::1", 22) == "TCP6:[::1]:22"
    # Another service of a compose workspace, on its private network.
    assert _address("10.231.4.3", 5432) == "TCP4:10.231.4.3:5432"


def test_a_process_is_the_workspace_only_if_its_cgroup_names_the_container():
    control = EngineControl(client=None, instance="x")
    # This test's own process is in no container of that id.
    assert control.local(os.getpid(), "f" * 64) is False
    assert control.local(0, "f" * 64) is False
    assert control.local(os.getpid(), "") is False  # an empty id is in every text
    assert EngineControl(client=None, instance="x", mode="engine").local(os.getpid(), "") is False
    with pytest.raises(ValueError):
        EngineControl(client=None, instance="x", mode="host")


def test_a_container_id_counts_only_as_a_whole_cgroup_path_component(tmp_path, monkeypatch):
    victim = "ab" * 32
    control = EngineControl(client=None, instance="x")
    fake = tmp_path / "cgroup"
    monkeypatch.setattr("app.runtime.docker.control.Path", lambda _path: fake)
    for text, expected in [
        (f"12:pids:/docker/{victim}\n", True),
        (f"0::/system.slice/docker-{victim}.scope\n", True),
        (f"12:pids:/user.slice/x{victim}y\n", False),  # the id inside another name
        (f"12:pids:/docker/{victim}/child\n", False),
    ]:
        fake.write_text(text)
        assert control.local(1, victim) is expected, text
    assert control.local(1, "AB" * 32) is False  # not an id at all
