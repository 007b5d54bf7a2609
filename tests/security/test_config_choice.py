"""A repository with several configs makes its create fail asking which; the workspace's
manager answers on its page or with PUT …/config, and only with a config the repository
has (a path checked like repo.config at create). A refused answer changes nothing; those
the workspace is shared with cannot answer. Each refusal sits beside the allowed use.
The whole way with a real repository and worker: tests/test_workspaces.py."""

from __future__ import annotations

import json

from app.db import database
from app.models import AuditEvent, Transition, Workspace
from tests.test_governance import app, call, shared_ws, tokens  # noqa: F401  (fixtures)
from tests.test_web import form_post, login

CHOICES = [".devcontainer/api/devcontainer.json", ".devcontainer/web/devcontainer.json"]


def _asking(ws_id: int) -> None:
    """The workspace as a worker leaves it after the create failed asking which config."""
    with database.connection_context():
        Workspace.update(
            repo_url="https://git.example.com/team/app.git",
            status="failed",
            error="the repository has 2 devcontainer configs",
            repo_choices=json.dumps(CHOICES),
        ).where(Workspace.id == ws_id).execute()


def _row(ws_id: int) -> Workspace:
    with database.connection_context():
        return Workspace.get_by_id(ws_id)


def _jobs(ws_id: int) -> int:
    with database.connection_context():
        return Transition.select().where(Transition.workspace == ws_id).count()


def test_only_a_config_the_repository_has_is_taken(app, tokens, shared_ws):  # noqa: F811
    _asking(shared_ws)
    client = app.test_client()
    shown = call(client, tokens["mia"], "GET", f"/workspaces/{shared_ws}").get_json()
    assert shown["repo"]["choices"] == CHOICES
    jobs = _jobs(shared_ws)
    for config, words in [
        (".devcontainer/db/devcontainer.json", "has no config"),
        ("../other/devcontainer.json", "stay inside it"),
        ("/etc/devcontainer.json", "stay inside it"),
        (".devcontainer/api/Dockerfile", "must name a devcontainer.json"),
        ("", "must be a path in the repository"),
    ]:
        refused = call(
            client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/config", json={"config": config}
        )
        assert refused.status_code == 422, (config, refused.get_json())
        error = refused.get_json()["error"]
        assert error["code"] == "invalid_config" and words in error["message"], error
    assert _jobs(shared_ws) == jobs
    assert _row(shared_ws).repo_config is None and json.loads(_row(shared_ws).repo_choices)

    # Sam may use the workspace (it is shared with his group), not choose how it is built.
    refused = call(
        client, tokens["sam"], "PUT", f"/workspaces/{shared_ws}/config", json={"config": CHOICES[0]}
    )
    assert refused.status_code == 403 and _jobs(shared_ws) == jobs

    chosen = call(
        client,
        tokens["mia"],
        "PUT",
        f"/workspaces/{shared_ws}/config",
        json={"config": "./.devcontainer//web/devcontainer.json"},
    )
    assert chosen.status_code == 202, chosen.get_json()
    answer = chosen.get_json()
    assert answer["transition"]["kind"] == "start" and answer["transition"]["status"] == "pending"
    assert answer["workspace"]["repo"] == {
        "url": "https://git.example.com/team/app.git",
        "ref": None,
        "config": CHOICES[1],
    }
    with database.connection_context():
        event = AuditEvent.select().where(AuditEvent.action == "workspace.config").get()
        assert event.actor == "mia" and json.loads(event.detail)["config"] == CHOICES[1]
    # Asked once: the workspace is busy with that create now.
    again = call(
        client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/config", json={"config": CHOICES[0]}
    )
    assert again.status_code == 409 and _row(shared_ws).repo_config == CHOICES[1]


def test_the_page_asks_its_manager_which_config(app, shared_ws):  # noqa: F811
    _asking(shared_ws)
    sam = app.test_client()
    login(sam, "sam", "sam-password")
    page = sam.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    assert 'data-testid="config-choice"' not in page  # shared with him: no choice to make

    mia = app.test_client()
    login(mia, "mia", "mia-password")
    page = mia.get(f"/workspaces/{shared_ws}").get_data(as_text=True)
    assert 'data-testid="config-choice"' in page
    assert all(f'value="{choice}"' in page for choice in CHOICES)
    done = form_post(
        mia, f"/workspaces/{shared_ws}/config", f"/workspaces/{shared_ws}", config=CHOICES[0]
    ).get_data(as_text=True)
    assert f"being created with {CHOICES[0]}" in done
    assert 'data-testid="config-choice"' not in done  # asked and answered
    assert _row(shared_ws).repo_config == CHOICES[0] and _row(shared_ws).repo_choices is None


def test_a_create_from_a_backup_is_retried_from_it(app, tokens, shared_ws):  # noqa: F811
    _asking(shared_ws)
    with database.connection_context():
        Transition.update(options=json.dumps({"restore": "backup-1"})).where(
            (Transition.workspace == shared_ws) & (Transition.kind == "create")
        ).execute()
    client = app.test_client()
    chosen = call(
        client, tokens["mia"], "PUT", f"/workspaces/{shared_ws}/config", json={"config": CHOICES[0]}
    )
    assert chosen.status_code == 202, chosen.get_json()
    with database.connection_context():
        job = Transition.get_by_id(chosen.get_json()["transition"]["id"])
    assert json.loads(job.options) == {"restore": "backup-1"}
