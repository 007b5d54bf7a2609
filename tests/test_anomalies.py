"""Anomaly alerts on a real sandbox: running past its expected duration, CPU pegged, a
burst of refused egress; recorded for admins and POSTed to the webhook, once."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta

import docker
import pytest

from app.config import Settings
from app.db import database, open_database
from app.models import utcnow
from app.runtime.docker import DockerRuntime
from app.workspaces import anomalies
from tests.services import wait_until


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802  (the http.server name)
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()


def test_sandbox_alerts(stack, webhook, docker_client):
    boss, ann = stack.clients["boss"], stack.clients["ann"]
    template = next(
        t for t in boss.call("GET", "/templates", 200).json() if t["name"] == "agent-sandbox"
    )
    limits = {
        **template["limits"],
        "expected_duration": "5s",
        "cpu_alert_after": "4s",
        "denied_egress_burst": 5,
    }
    boss.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": limits})
    try:
        ws = ann.call(
            "POST",
            "/workspaces",
            201,
            json={
                "name": "busy",
                "template": "agent-sandbox",
                "wait": True,
                # A quarter of a CPU: pegged even when the machine is busy with other work.
                "parameters": {"cpu": 0.25},
            },
        ).json()
        assert ws["status"] == "running"
        # Burn a CPU (the sandbox has one) and knock on closed doors.
        ann.exec(ws["id"], ["sh", "-c", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 &"])
        ann.exec(
            ws["id"],
            [
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do curl -s http://denied.example/ >/dev/null; done",
            ],
        )
        settings = Settings.load({"data_dir": str(stack.data_dir), "alert_webhook": webhook})
        open_database(settings)
        provisioner = DockerRuntime(
            docker.DockerClient(base_url=settings.docker_host), settings.instance
        )
        detector = anomalies.Detector()
        # The detector's clock, a constant 6 s ahead: past the expected duration at once,
        # while the CPU samples still measure real time between them.
        ahead = timedelta(seconds=6)
        expected = {"long_running", "cpu_pegged", "egress_denied_burst"}
        raised = []

        def all_raised() -> bool:
            with database.connection_context():
                raised.extend(detector.run(settings, provisioner, now=utcnow() + ahead))
            return {line.split(": ")[1] for line in raised} >= expected

        wait_until(all_raised, timeout=90, interval=1.0, what="every alert raised")
        with database.connection_context():
            again = detector.run(settings, provisioner, now=utcnow() + ahead)
        kinds = {line.split(": ")[1] for line in raised}
        assert kinds == expected, raised
        assert again == []  # once an hour per sandbox and kind
        sent = {hook["kind"]: hook for hook in _Hook.received}
        assert set(sent) == kinds
        assert sent["cpu_pegged"]["workspace"] == "ann.busy"
        assert sent["cpu_pegged"]["detail"]["cpu_fraction"] >= 0.9
        assert sent["egress_denied_burst"]["detail"]["denied"] >= 5
        records = boss.call("GET", "/audit", 200, params={"action": "anomaly."}).json()
        assert {r["action"] for r in records} == {f"anomaly.{k}" for k in kinds}
        from tests import services

        page = services.web_session(stack.url, "boss").get(stack.url + "/admin/operations").text
        assert 'data-anomaly="anomaly.cpu_pegged"' in page
        ann.delete(ws["id"])
        ann.wait(ws["id"], "deleted", timeout=120)
    finally:
        boss.call("PATCH", "/templates/agent-sandbox", 200, json={"limits": template["limits"]})
