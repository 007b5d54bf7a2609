"""Berth's Caddyfiles as the real Caddy reads them (``caddy adapt``): the embedded one and
the appliance's in each TLS mode install.sh can write, including ACME, which the end-to-end
test cannot reach from this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.processes.supervisor import caddy_command

CADDY_DIR = Path(__file__).resolve().parent.parent / "caddy"
ASK = "http://127.0.0.1:8000/_berth/tls-ask"


def adapt(caddyfile: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [caddy_command()[0], "adapt", "--config", str(CADDY_DIR / caddyfile)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def appliance(site: str, apps_site: str, tls: str, apps_tls: str) -> dict:
    return adapt(
        "Caddyfile.appliance",
        {
            "BERTH_HTTP_PORT": "80",
            "BERTH_HTTPS_PORT": "443",
            "BERTH_WEB_UPSTREAM": "127.0.0.1:8000",
            "BERTH_SITE": site,
            "BERTH_APPS_SITE": apps_site,
            "BERTH_TLS": tls,
            "BERTH_APPS_TLS": apps_tls,
            "BERTH_ACME_EMAIL": "ops@example.com" if tls == "acme" else "",
        },
    )


def policies(config: dict) -> dict[str, dict]:
    return {
        subject: policy
        for policy in config["apps"]["tls"]["automation"]["policies"]
        for subject in policy.get("subjects", [])
    }


def listeners(config: dict) -> list[list[str]]:
    return sorted(server["listen"] for server in config["apps"]["http"]["servers"].values())


def test_the_embedded_caddyfile_serves_plain_http_on_both_ports():
    config = adapt(
        "Caddyfile",
        {
            "BERTH_HOST": "127.0.0.1",
            "BERTH_PORT": "8080",
            "BERTH_APPS_PORT": "8081",
            "BERTH_WEB_UPSTREAM": "unix//tmp/web.sock",
        },
    )
    assert listeners(config) == [["127.0.0.1:8080"], ["127.0.0.1:8081"]]
    assert "tls" not in config["apps"]


def test_a_public_domain_gets_acme_certificates_and_workspace_hosts_on_demand():
    config = appliance("berth.example.com", "*.berth.example.com:8443", "acme", "acme")
    found = policies(config)
    main, apps = found["berth.example.com"], found["*.berth.example.com"]
    assert {issuer["module"] for issuer in main["issuers"]} == {"acme"}
    assert main["issuers"][0]["email"] == "ops@example.com"
    assert "on_demand" not in main
    assert apps["on_demand"] is True
    # Caddy asks Berth before it asks the CA, so no one can make it request any name.
    assert config["apps"]["tls"]["automation"]["on_demand"]["permission"]["endpoint"] == ASK
    assert listeners(config) == [[":443"], [":8443"]]


@pytest.mark.parametrize("domain", ["localhost", "berth.lan"])
def test_a_local_domain_gets_per_host_certificates_from_the_internal_ca(domain):
    found = policies(appliance(domain, f"*.{domain}:8443", "internal", "internal"))
    assert found[domain]["issuers"] == [{"module": "internal"}]
    # Browsers refuse *.localhost; each workspace host gets its own certificate.
    assert found[f"*.{domain}"]["on_demand"] is True
    assert found[f"*.{domain}"]["issuers"] == [{"module": "internal"}]


def test_an_ip_address_gets_an_internal_certificate_without_on_demand():
    config = appliance("10.0.0.5", "10.0.0.5:8443", "internal", "internal-ip")
    found = policies(config)
    assert found == {"10.0.0.5": {"subjects": ["10.0.0.5"], "issuers": [{"module": "internal"}]}}
    assert listeners(config) == [[":443"], [":8443"]]
    # Clients send no server name for an address; both ports answer with its certificate
    # (without this, the handshake ended in "tlsv1 alert internal error").
    for server in config["apps"]["http"]["servers"].values():
        assert {p["default_sni"] for p in server["tls_connection_policies"]} == {"10.0.0.5"}


def test_every_site_routes_the_apps_origin_through_forward_auth():
    config = appliance("localhost", "*.localhost:8443", "internal", "internal")
    dumped = json.dumps(config)
    assert dumped.count("/_berth/authorize") == 1
    assert '"X-Berth-Upstream"' in dumped


def test_berth_serve_finds_its_caddyfile():
    from app.processes import supervisor

    assert supervisor.CADDYFILE.is_file(), supervisor.CADDYFILE
