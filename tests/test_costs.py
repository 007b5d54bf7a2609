"""Cost metered from a scripted timeline of status changes, equal to the hand-computed
figure; reports by workspace, user and group (JSON and CSV); budgets: the 80 % alert and
the hard stop at 100 % (running workspaces stopped, new starts refused, all audited)."""

import csv
import io
import json
from datetime import datetime, timedelta

import pytest

from app import accounts, audit, costs, groups, migrations
from app.config import Settings
from app.db import database
from app.factory import create_app
from app.models import StateChange, Template, Transition, Workspace, utcnow
from app.workspaces import scheduled as jobs
from app.workspaces import templates

T0 = datetime(2026, 10, 1, 8, 0)
# (minutes after T0, status): running 2 h, then 30 min, then 1 h = 3.5 h in all.
TIMELINE = [
    (0, "pending"),
    (5, "building"),
    (10, "starting"),
    (12, "running"),
    (132, "stopping"),
    (133, "stopped"),
    (300, "starting"),
    (301, "running"),
    (331, "failed"),
    (360, "running"),  # the reconciler found it running again
    (420, "stopping"),
    (421, "stopped"),
]
PRICING = {"per_hour": 0.5, "per_cpu_hour": 0.1, "per_gb_hour": 0.05}
PARAMETERS = {"cpu": 2, "memory": 2048}  # 0.5 + 2 × 0.1 + 2 GB × 0.05 = 0.80 an hour


def _workspace(owner, name, changes, parameters=PARAMETERS, template="base"):
    ws = Workspace.create(
        owner=owner,
        name=name,
        live_name=name,
        template=Template.get(Template.name == template) if template else None,
        parameters=json.dumps(parameters),
        status=changes[-1][1],
        created_at=changes[0][0],
    )
    for at, status in changes:
        StateChange.create(workspace=ws, to_status=status, cause="api", at=at)
    return ws


@pytest.fixture
def setup(instance):
    templates.sync_builtin()
    templates.update(Template.get(Template.name == "base"), pricing=PRICING)
    mia = accounts.create_user("mia", "mia-password")
    bob = accounts.create_user("bob", "bob-password")
    team = groups.create("team")
    groups.add_member(team, mia)
    return mia, bob, team


def test_cost_of_a_scripted_timeline_equals_the_hand_computed_figure(setup):
    mia, bob, team = setup
    _workspace(mia, "code", [(T0 + timedelta(minutes=m), s) for m, s in TIMELINE])
    # bob's: no template, so no price; 1 h of running counts as hours at rate 0.
    _workspace(bob, "free", [(T0, "running"), (T0 + timedelta(hours=1), "stopped")], {}, None)
    lines = costs.workspace_costs(T0, T0 + timedelta(days=1))
    code = next(line for line in lines if line.workspace == "mia.code")
    assert code.rate == pytest.approx(0.80)
    assert code.hours == pytest.approx(3.5)
    assert code.cost == pytest.approx(2.80)
    free = next(line for line in lines if line.workspace == "bob.free")
    assert free.hours == pytest.approx(1.0) and free.cost == 0
    # A period cuts intervals: 09:12-13:16 holds 1 h of the first and 15 min of the second.
    part = costs.workspace_costs(T0 + timedelta(minutes=72), T0 + timedelta(minutes=316))
    code = next(line for line in part if line.workspace == "mia.code")
    assert code.hours == pytest.approx(1.25) and code.cost == pytest.approx(1.00)
    assert costs.by_user(lines) == pytest.approx({"mia": 2.80, "bob": 0.0})
    assert costs.by_group(lines) == pytest.approx({"team": 2.80})
    # Prices are validated by name.
    with pytest.raises(templates.TemplateError, match="pricing.per_hour must be a non-negative"):
        templates.update(Template.get(Template.name == "base"), pricing={"per_hour": -1})
    with pytest.raises(templates.TemplateError, match="unknown price 'per_day'"):
        templates.update(Template.get(Template.name == "base"), pricing={"per_day": 1})


def test_a_compose_workspace_costs_and_counts_each_of_its_containers(setup):
    """Each started service of a compose config runs with the template's CPUs and memory:
    costs and quotas count them all, and the worker checks the quota again before it
    makes them (the number is known only once it has read the config)."""
    from types import SimpleNamespace

    from app.workspaces import lifecycle, quotas

    mia, _, _ = setup
    ws = _workspace(mia, "stack", [(T0, "running"), (T0 + timedelta(hours=1), "stopped")])
    ws.containers = 3
    ws.save()
    (line,) = [x for x in costs.workspace_costs(T0, T0 + timedelta(days=1)) if x.hours]
    assert line.rate == pytest.approx(0.5 + 3 * (2 * 0.1 + 2 * 0.05))

    ws.status = "running"
    ws.save()
    assert quotas.usage(mia).cpu == 6 and quotas.usage(mia).memory_mb == 3 * 2048
    quotas.set_quota(mia, {"max_cpu": 8})
    other = _workspace(mia, "next", [(T0, "building")])

    def spec(services: int):
        return SimpleNamespace(compose=SimpleNamespace(services=[None] * services))

    # 6 CPUs in use; "next" as one container would make 8 (allowed), as two 10 (refused).
    with pytest.raises(lifecycle.JobFailed) as refused:
        lifecycle._count_containers(other, spec(1))
    assert "(this one (2 containers: its compose services) would make 10)" in str(refused.value)
    assert Workspace.get_by_id(other.id).containers == 1  # nothing recorded
    lifecycle._count_containers(other, spec(0))
    assert Workspace.get_by_id(other.id).containers == 1


def test_cost_reports_over_the_api_and_the_page(tmp_path):
    settings = Settings.load({"data_dir": str(tmp_path / "data")}, environ={})
    app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        templates.sync_builtin()
        templates.update(Template.get(Template.name == "base"), pricing=PRICING)
        mia = accounts.create_user("mia", "mia-password")
        accounts.create_user("root", "root-password", "admin")
        groups.add_member(groups.create("team"), mia)
        _workspace(mia, "code", [(T0 + timedelta(minutes=m), s) for m, s in TIMELINE])
        root = accounts.create_token(accounts.find_user("root"), "t")[1]
        own = accounts.create_token(mia, "t")[1]
    client = app.test_client()

    def get(token, query):
        return client.get(f"/api/v2/costs?{query}", headers={"Authorization": f"Bearer {token}"})

    period = "since=2026-10-01T00:00:00Z&until=2026-10-02T00:00:00Z"
    report = get(root, period).get_json()
    assert report["total"] == pytest.approx(2.80)
    assert report["rows"][0]["workspace"] == "mia.code" and report["rows"][0]["hours"] == 3.5
    assert get(root, period + "&by=group").get_json()["rows"] == [{"group": "team", "cost": 2.8}]
    assert get(own, period + "&by=user").get_json()["rows"] == [{"user": "mia", "cost": 2.8}]
    assert get(own, period + "&by=group").status_code == 403
    table = list(csv.DictReader(io.StringIO(get(root, period + "&format=csv").text)))
    assert table[0]["workspace"] == "mia.code" and float(table[0]["cost"]) == pytest.approx(2.8)
    bad = get(root, "since=2026-10-02T00:00:00Z&until=2026-10-01T00:00:00Z")
    assert bad.status_code == 422 and "until must be after since" in bad.text
    # The page, for an admin, with its CSV.
    from tests.test_web import login

    login(client, "root", "root-password")
    page = client.get("/admin/costs?since=2026-10-01T00:00&until=2026-10-02T00:00")
    assert page.status_code == 200 and "2.80 USD" in page.get_data(as_text=True)
    download = client.get("/admin/costs.csv?since=2026-10-01T00:00&until=2026-10-02T00:00")
    assert download.headers["Content-Disposition"].endswith('berth-costs-20261001-20261002.csv"')
    assert "mia.code" in download.get_data(as_text=True)


def _running_since_this_month(owner, name, hours_back=4):
    """A workspace running since up to ``hours_back`` hours ago, within this month."""
    now = utcnow()
    start = max(costs.month_start(now), now - timedelta(hours=hours_back))
    ws = _workspace(owner, name, [(start, "running")])
    return ws, (now - start).total_seconds() / 3600 * 0.80  # what it has cost so far


def test_budget_alert_at_80_percent_and_hard_stop_at_100(setup, instance):
    mia, bob, team = setup
    ops = groups.create("ops")
    groups.add_member(ops, bob)
    running, spent = _running_since_this_month(mia, "busy")
    _, bob_spent = _running_since_this_month(bob, "steady")
    costs.set_budget(team, spent / 2, hard_stop=True)  # used up twice over
    costs.set_budget(ops, bob_spent / 0.9)  # 90 %: alert only
    done = jobs.enforce_budgets(instance)
    assert "team: " in done and "mia/busy: stopped (budget of team)" in done
    assert "ops: 90% of its budget used" in done or "ops: 9" in done
    stop = Transition.get(Transition.workspace == running)
    assert (stop.kind, stop.cause, stop.actor) == ("stop", "schedule", "budget")
    assert "monthly budget of group team is used up" in stop.reason
    assert (
        not Transition.select()
        .where(Transition.actor == "budget", Transition.kind == "stop")
        .where(Transition.workspace != running)
        .exists()
    )  # bob's group only alerts
    # New starts are refused while the budget is used up.
    from app.workspaces import service

    with pytest.raises(service.WorkspaceError, match="budget exhausted: group team has spent"):
        service.create(mia, "another", template_name="base", data_dir=instance.data_dir)
    assert not Workspace.select().where(Workspace.name == "another").exists()
    service.create(bob, "allowed", template_name="base", data_dir=instance.data_dir)
    # Recorded once a month, however often the job runs.
    jobs.enforce_budgets(instance)
    actions = [(r.action, r.target) for r in audit.search(action="budget.")]
    assert actions.count(("budget.alert", "group:team")) == 1
    assert actions.count(("budget.alert", "group:ops")) == 1
    assert actions.count(("budget.stop", "group:team")) == 1
    assert ("budget.stop", "group:ops") not in actions
    # Raising the budget lets starts through again.
    costs.set_budget(team, spent * 10, hard_stop=True)
    service.create(mia, "again", template_name="base", data_dir=instance.data_dir)
