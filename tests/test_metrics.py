"""/metrics: protected, and what it says is what the database and the requests say,
read back with prometheus-client's own parser."""

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import accounts, migrations
from app.config import Settings
from app.db import database
from app.factory import create_app
from app.models import (
    Activity,
    ScheduledJob,
    StateChange,
    Transition,
    User,
    Workspace,
    utcnow,
)

METRICS_TOKEN = "m" * 40


@pytest.fixture
def app(tmp_path):
    settings = Settings.load(
        {"data_dir": str(tmp_path / "data"), "metrics_token": METRICS_TOKEN}, environ={}
    )
    flask_app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        accounts.create_user("root", "root-password", "admin")
        accounts.create_user("mia", "mia-password")
        accounts.create_user("aud", "aud-password", "auditor")
    yield flask_app


def _scrape(client, token) -> dict:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _history(mia: User) -> None:
    """Three workspaces with jobs of known durations, a build of 40 s, SSH sessions."""
    now = utcnow()
    for name, status in (("a", "running"), ("b", "running"), ("c", "stopped")):
        ws = Workspace.create(owner=mia, name=name, live_name=name, status=status)
        job = Transition.create(
            workspace=ws,
            kind="create",
            status="succeeded",
            started_at=now - timedelta(seconds=50),
            finished_at=now - timedelta(seconds=5),  # 45 s
        )
        StateChange.create(
            workspace=ws,
            transition=job,
            to_status="building",
            cause="api",
            at=now - timedelta(seconds=50),
        )
        StateChange.create(
            workspace=ws,
            transition=job,
            to_status="starting",
            cause="api",
            at=now - timedelta(seconds=10),
        )
    Transition.create(
        workspace=ws,
        kind="start",
        status="failed",
        started_at=now - timedelta(seconds=3),
        finished_at=now,
    )
    Activity.create(workspace=ws, source="ssh", open_sessions=2)
    ScheduledJob.create(
        name="backup", schedule="cron", runs=4, failures=1, last_outcome="succeeded"
    )


def test_metrics_need_a_token(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with database.connection_context():
        member = accounts.create_token(accounts.find_user("mia"), "m")[1]
        admin_narrow = accounts.create_token(
            accounts.find_user("root"), "n", scopes=["workspaces:read"]
        )[1]
        auditor = accounts.create_token(accounts.find_user("aud"), "a")[1]
    for refused in (member, admin_narrow):
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {refused}"}).status_code
            == 401
        )
    assert client.get("/metrics", headers={"Authorization": f"Bearer {auditor}"}).status_code == 200


def test_metrics_report_the_database_and_the_requests(app):
    client = app.test_client()
    with database.connection_context():
        _history(accounts.find_user("mia"))
        token = accounts.create_token(accounts.find_user("mia"), "m")[1]
    for _ in range(3):
        assert (
            client.get("/api/v2/me", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
    assert (
        client.get(
            "/api/v2/workspaces/999", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )
    samples = _scrape(client, METRICS_TOKEN)
    assert samples[("berth_workspaces", (("state", "running"),))] == 2
    assert samples[("berth_workspaces", (("state", "stopped"),))] == 1
    assert samples[("berth_workspaces", (("state", "failed"),))] == 0
    create = (("kind", "create"), ("outcome", "succeeded"))
    assert samples[("berth_transition_duration_seconds_count", create)] == 3
    assert samples[("berth_transition_duration_seconds_sum", create)] == pytest.approx(135)
    assert (
        samples[
            ("berth_transition_duration_seconds_bucket", tuple(sorted((*create, ("le", "30.0")))))
        ]
        == 0
    )
    assert (
        samples[
            ("berth_transition_duration_seconds_bucket", tuple(sorted((*create, ("le", "60.0")))))
        ]
        == 3
    )
    failed = (("kind", "start"), ("outcome", "failed"))
    assert samples[("berth_transition_duration_seconds_count", failed)] == 1
    build = (("outcome", "succeeded"),)
    assert samples[("berth_build_duration_seconds_count", build)] == 3
    assert samples[("berth_build_duration_seconds_sum", build)] == pytest.approx(120)
    assert samples[("berth_ssh_sessions_open", ())] == 2
    assert samples[("berth_scheduler_job_runs_total", (("job", "backup"),))] == 4
    assert samples[("berth_scheduler_job_failures_total", (("job", "backup"),))] == 1
    assert samples[("berth_scheduler_job_last_success", (("job", "backup"),))] == 1
    me = (("method", "GET"), ("route", "/api/v2/me"), ("status", "200"))
    assert samples[("berth_api_requests_total", me)] == 3
    missing = (("method", "GET"), ("route", "/api/v2/workspaces/<workspace_id>"), ("status", "404"))
    assert samples[("berth_api_requests_total", missing)] == 1
    assert samples[("berth_api_request_duration_seconds_count", (("route", "/api/v2/me"),))] == 3
