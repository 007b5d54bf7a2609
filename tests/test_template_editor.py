"""The template editor's form over Flask's test client: each field read into what the
API takes and checked alike, what was typed kept on a refusal, what the form has no
field for kept as it was, every save in the template's history, and only for those
who may manage templates."""

import json

import pytest

from app import accounts, migrations
from app.config import Settings
from app.db import database
from app.factory import create_app
from app.http.extensions import limiter
from app.models import Template
from app.workspaces import templates
from tests.test_web import csrf_of, login


@pytest.fixture
def admin(tmp_path):
    settings = Settings.load({"data_dir": str(tmp_path / "data")}, environ={})
    app = create_app(settings)
    with database.connection_context():
        migrations.upgrade(database.obj)
        templates.sync_builtin()
        accounts.create_user("root", "root-password", "admin")
        accounts.create_user("tia", "tia-password", "template-admin")
        accounts.create_user("mia", "mia-password")
        base = Template.get(Template.name == "base")
        # A limit the form has no field for.
        limits = {**json.loads(base.limits), "future_limit": 7}
        Template.update(limits=json.dumps(limits)).where(Template.id == base.id).execute()
    limiter.reset()
    client = app.test_client()
    login(client, "root", "root-password")
    client.base_id = base.id
    return client


def _save(client, **fields):
    page = client.get(f"/admin/templates/{client.base_id}").get_data(as_text=True)
    form = {"csrf_token": csrf_of(page), "enabled": "on", "approvals": "{}", **fields}
    return client.post(f"/admin/templates/{client.base_id}", data=form)


def _base():
    with database.connection_context():
        return Template.get(Template.name == "base")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"price.per_hour": "nan"}, "pricing.per_hour must be a finite number"),
        ({"price.per_cpu_hour": "-1"}, "must be a non-negative number"),
        ({"limit.pids": "4.5"}, "Most processes in a workspace: '4.5' is not a whole number"),
        ({"limit.max_cpu": "1e400"}, "finite"),
        ({"limit.dormant_after": "soon"}, "dormant_after"),
        ({"param.cpu.default": "99"}, "parameters.cpu"),
        ({"param.memory.min": "lots"}, "memory (min): 'lots' is not a whole number"),
        ({"approvals": '{"privileged": true, "bogus": 1}'}, "bogus"),
    ],
)
def test_a_wrong_field_is_refused_by_name_and_nothing_changes(admin, fields, words):
    before = _base()
    answer = _save(admin, **fields)
    assert answer.status_code in (403, 422)
    page = answer.get_data(as_text=True)
    assert words in page.replace("&#39;", "'"), page[page.find("Not saved") :][:300]
    for name, value in fields.items():
        if name != "approvals":
            assert f'value="{value}"' in page  # what was typed is still there
    after = _base()
    assert (after.limits, after.pricing, after.parameters) == (
        before.limits,
        before.pricing,
        before.parameters,
    )


def test_a_save_keeps_what_the_form_does_not_show_and_is_in_the_history(admin):
    answer = _save(
        admin,
        **{
            "price.per_hour": "0.10",
            "limit.max_ttl_hours": "48",
            "limit.ide_idle_timeout": "30m",
            "limit.dormant_backup": "on",
            "param.cpu.max": "3",
        },
    )
    assert answer.status_code == 302
    base = _base()
    limits = json.loads(base.limits)
    assert limits["future_limit"] == 7 and limits["max_ttl_hours"] == 48
    assert limits["ide_idle_timeout"] == "30m" and limits["dormant_backup"] is True
    assert json.loads(base.pricing) == {"per_hour": 0.1}
    assert json.loads(base.parameters)["cpu"]["max"] == 3
    page = admin.get(f"/admin/templates/{admin.base_id}").get_data(as_text=True)
    history = page[page.find('data-testid="template-history"') :]
    assert "root" in history and "parameters, limits, pricing" in history
    # Emptying a field removes the limit.
    _save(admin, **{"limit.max_ttl_hours": ""})
    assert "max_ttl_hours" not in json.loads(_base().limits)


def test_only_template_managers_open_the_editor(admin):
    for who, expected in (("tia", 200), ("mia", 403)):
        other = admin.application.test_client()
        login(other, who, f"{who}-password")
        assert other.get(f"/admin/templates/{admin.base_id}").status_code == expected
    assert admin.get("/admin/templates/999999").status_code == 404


def test_a_refusal_marks_its_field_and_limits_must_cover_what_is_offered(admin):
    answer = _save(admin, **{"limit.max_memory_mb": "6144"})  # memory max is 8192
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "parameters.memory.max is 8192, above limits.max_memory_mb (6144)" in page
    assert 'data-parameter="memory" aria-invalid="true"' in page
    answer = _save(admin, **{"limit.pids": "lots"})
    page = answer.get_data(as_text=True)
    assert 'name="limit.pids" value="lots"' in page and 'aria-describedby="field-error"' in page
    huge = _save(admin, **{"limit.pids": "9" * 5000})
    assert huge.status_code == 422 and "too long for a number" in huge.get_data(as_text=True)
    # The API refuses the same.
    with database.connection_context():
        token = accounts.create_token(accounts.find_user("root"), "t")[1]
    patched = admin.patch(
        "/api/v2/templates/base",
        json={"limits": {"max_cpu": 1}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (
        patched.status_code == 422
        and "above limits.max_cpu" in patched.get_json()["error"]["message"]
    )


def test_whole_numbers_stay_whole(admin):
    assert _save(admin, **{"param.cpu.default": "2", "param.cpu.max": "3.5"}).status_code == 302
    cpu = json.loads(_base().parameters)["cpu"]
    assert cpu["default"] == 2 and isinstance(cpu["default"], int) and cpu["max"] == 3.5
