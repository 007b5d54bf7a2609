"""Addressing workspaces on the apps origin (app.workspaces.apps), without services."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.workspaces.apps import Target, parse, safe_path, target_of_url, upstream_path, url


def settings(**values) -> Settings:
    return Settings.load({"data_dir": "/tmp/berth-apps-unit", "port": 8080, **values}, environ={})


def test_loopback_instances_use_localhost_subdomains_by_default():
    local = settings()
    assert local.apps_domain == "localhost" and local.apps_port == 8081
    assert url(local, Target("ann", "shell")) == "http://shell--ann.localhost:8081/"
    assert url(local, Target("ann", "shell", 3000)) == "http://3000--shell--ann.localhost:8081/"
    remote = settings(public_url="https://berth.example.com")
    assert remote.apps_domain == "none"
    assert (
        url(remote, Target("ann", "shell"), "/x") == "https://berth.example.com:8081/@ann/shell/x"
    )


def test_subdomains_parse_back_including_owners_with_hyphens():
    local = settings(apps_domain="apps.example.com", public_url="https://berth.example.com")
    assert parse(local, "shell--ann.apps.example.com:8081", "/a?b=1") == (
        Target("ann", "shell"),
        "/a?b=1",
    )
    assert parse(local, "8000--my-app--bo-b.apps.example.com", "/") == (
        Target("bo-b", "my-app", 8000),
        "/",
    )
    assert parse(local, "shell.apps.example.com", "/") is None
    assert parse(local, "shell--ann.evil.com", "/") is None
    assert parse(local, "99999--shell--ann.apps.example.com", "/") is None


def test_paths_parse_back_and_strip_the_prefix():
    paths = settings(apps_domain="none")
    assert parse(paths, "127.0.0.1:8081", "/@ann/shell/static/x.js?v=1") == (
        Target("ann", "shell"),
        "/static/x.js?v=1",
    )
    assert parse(paths, "127.0.0.1:8081", "/@ann/shell--3000/") == (
        Target("ann", "shell", 3000),
        "/",
    )
    assert parse(paths, "127.0.0.1:8081", "/@ann/shell") == (Target("ann", "shell"), "/")
    assert parse(paths, "127.0.0.1:8081", "/@ann/shellfish") == (Target("ann", "shellfish"), "/")
    assert parse(paths, "127.0.0.1:8081", "/elsewhere") is None


def test_only_addresses_on_the_apps_origin_are_accepted_for_redirects():
    local = settings()
    assert target_of_url(local, "http://shell--ann.localhost:8081/?folder=/x")[0] == Target(
        "ann", "shell"
    )
    assert target_of_url(local, "http://shell--ann.localhost:9999/") is None
    assert target_of_url(local, "https://shell--ann.localhost:8081/") is None
    assert target_of_url(local, "http://evil.example.com:8081/") is None


def test_paths_that_climb_out_are_refused_and_ports_go_through_the_proxy():
    assert safe_path("/a/b?c=../d") == "/a/b?c=../d"
    assert safe_path("/a/../b") is None
    assert safe_path("/a/%2e%2e/b") is None
    assert safe_path("/a/%252e%252e/b") is None
    assert upstream_path(Target("ann", "shell", 3000), "/x?y=1") == "/proxy/3000/x?y=1"
    assert upstream_path(Target("ann", "shell"), "/x") == "/x"


def test_a_bad_apps_domain_is_named():
    with pytest.raises(ConfigError, match="BERTH_APPS_DOMAIN"):
        settings(apps_domain="not a domain")
