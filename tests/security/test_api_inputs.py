"""Finding 11 (bad input): every API route, given hostile JSON and hostile path values,
answers with a clear 4xx in the API's error shape, never a 500 and never invalid JSON,
and a refused request creates nothing."""

from __future__ import annotations

import json
import re

from app.api.spec import spec_of
from app.db import database
from app.models import ApiToken, Transition, Workspace
from tests.security.conftest import call
from tests.security.test_api_scopes import documented

FIELDS = ("name", "template", "repo")  # hostile bodies for routes that take none
HOSTILE = (
    None, True, -1, 0, 1e308, 10**30, "", "x" * 5000, "../../etc/passwd", "\x00",
    [], ["base"], {}, {"cpu": 1e308}, [{"a": [{"b": None}]}],
)  # fmt: skip
RAW = (
    b"NaN", b'{"parameters": {"cpu": NaN}}', b'{"name": Infinity}', b'{"ttl": -Infinity}',
    b'{"timeout": 1e999}', b"[", b'"text"', b"[1, 2]", b"\xff\xfe", b'{"a": 1' + b"]" * 10,
)  # fmt: skip
PATH_VALUES = ("0", "-1", "abc", "9" * 30, "1 OR 1=1", "%2e%2e", "x" * 300)


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"the answer holds {constant}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def _urls(path: str, ws_id: int) -> list[str]:
    base = {
        "workspace_id": str(ws_id), "name": "base", "user": "olga", "kind": "users",
        "key_id": "1", "token_id": "1", "port": "8000", "recording_id": "1",
        "credential_id": "1",
    }  # fmt: skip
    # A followed log stream never ends by itself; its hostile inputs are the same.
    query = "?follow=false" if path.endswith("/logs") else ""
    urls = [re.sub(r"\{(\w+)\}", lambda m: base[m.group(1)], path) + query]
    for param in re.findall(r"\{(\w+)\}", path):
        for value in PATH_VALUES:
            values = {**base, param: value}
            urls.append(re.sub(r"\{(\w+)\}", lambda m, v=values: v[m.group(1)], path) + query)
    return urls


def _counts():
    with database.connection_context():
        return (Workspace.select().count(), Transition.select().count(), ApiToken.select().count())


def _fields(flask_app, path: str, method: str) -> list[str]:
    """The body fields a route reads: those of the model it declares (app.api.spec),
    or a few when it takes no body."""
    for rule in flask_app.url_map.iter_rules():
        shown = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v2") :])
        if shown == path and method in rule.methods:
            spec = spec_of(flask_app.view_functions[rule.endpoint])
            body = spec.body if spec is not None else None
            return list(body.model_fields) if body is not None else list(FIELDS)
    raise AssertionError(f"{method} {path} is not a route")


def test_hostile_json_and_paths_on_every_route_give_clear_errors(app, tokens, shared_ws):
    client = app.test_client()
    problems = []
    for (path, method), (scope, _) in sorted(documented().items()):
        token = tokens["root"] if scope == "admin" else tokens["mia"]
        fields = _fields(app, path, method)
        for url in _urls(path, shared_ws):
            bodies = [{"data": raw, "content_type": "application/json"} for raw in RAW]
            bodies += [{"json": {field: value}} for field in fields for value in HOSTILE]
            for body in bodies if url == _urls(path, shared_ws)[0] else bodies[:3]:
                answer = call(client, token, method, url, **body)
                text = answer.get_data(as_text=True)
                where = (method, url[:80], str(body)[:120], answer.status_code)
                if answer.status_code >= 500:
                    problems.append((*where, text[:200]))
                    continue
                if answer.mimetype == "application/json":
                    try:
                        found = _strict(text)
                    except (ValueError, AssertionError) as exc:
                        problems.append((*where, f"invalid JSON: {exc}"))
                        continue
                    if answer.status_code >= 400 and not (
                        isinstance(found, dict) and found.get("error", {}).get("message")
                    ):
                        problems.append((*where, "an error without a message"))
    assert problems == []


def test_the_cases_of_finding_11_are_refused_by_name_and_create_nothing(app, tokens):
    client = app.test_client()
    before = _counts()
    nan = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        data=b'{"name": "nn", "template": "base", "parameters": {"cpu": NaN}}',
        content_type="application/json",
    )
    assert (
        nan.status_code == 400 and "NaN is not a JSON number" in nan.get_json()["error"]["message"]
    )
    ttl = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "tt", "template": "base", "ttl": "99999999999999d"},
    )
    assert ttl.status_code == 422 and "longer than 100 years" in ttl.get_json()["error"]["message"]
    listed = call(
        client, tokens["mia"], "POST", "/workspaces", json={"name": "ll", "template": ["base"]}
    )
    assert listed.status_code == 422 and "template" in listed.get_json()["error"]["message"]
    huge = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "hh", "template": "base", "parameters": {"cpu": 1e308}},
    )
    assert huge.status_code == 422 and "cpu" in huge.get_json()["error"]["message"]
    assert _counts() == before
    # The same requests, well formed, are taken.
    made = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "fine", "template": "base", "ttl": "4h", "parameters": {"cpu": 1}},
    )
    assert made.status_code == 201 and made.get_json()["ttl_expires_at"]


def test_more_inputs_that_once_reached_a_500(app, tokens, shared_ws):
    client = app.test_client()
    for path in ("/workspaces/%C2%B2", "/users/me/keys/%C2%B2", "/workspaces/%C2%B2/recordings"):
        method = "DELETE" if "keys" in path else "GET"
        assert call(client, tokens["mia"], method, path).status_code == 404, path
    for url in ("https://h:99999/x", "https://h:abc/x", "https://[::1/x"):
        bad = call(
            client, tokens["mia"], "POST", "/workspaces", json={"name": "rr", "repo": {"url": url}}
        )
        assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_repo", url
    huge = int("9" * 400)
    budget = call(client, tokens["root"], "PUT", "/budgets/team", json={"monthly": huge})
    assert budget.status_code == 422
    default = call(
        client,
        tokens["tina"],
        "PATCH",
        "/templates/base",
        json={"parameters": {"cpu": {"type": "number", "default": huge}}},
    )
    assert default.status_code == 422 and "parameters.cpu" in default.get_json()["error"]["message"]
    made = call(
        client, tokens["mia"], "POST", "/workspaces", json={"name": "ok", "template": "base"}
    )
    assert made.status_code == 201


def test_a_body_larger_than_any_request_needs_is_refused_unread(app, tokens, shared_ws):
    client = app.test_client()
    answer = call(
        client,
        tokens["mia"],
        "PUT",
        f"/workspaces/{shared_ws}/files?path=x",
        data=b"x" * (258 * 1024 * 1024),
    )
    assert answer.status_code == 413


def test_listing_workspaces_costs_the_same_queries_for_three_or_thirty(app, tokens):
    """GET /workspaces reads a fixed number of times, however many workspaces there are
    (it answered in 4 queries per workspace)."""
    import logging

    class Count(logging.Handler):
        def __init__(self):
            super().__init__()
            self.queries = 0

        def emit(self, record):
            self.queries += 1

    client = app.test_client()

    def cost() -> int:
        counter = Count()
        logger = logging.getLogger("peewee")
        logger.addHandler(counter)
        logger.setLevel(logging.DEBUG)
        try:
            listed = call(client, tokens["mia"], "GET", "/workspaces")
        finally:
            logger.removeHandler(counter)
        assert listed.status_code == 200
        return counter.queries

    for n in range(3):
        call(
            client,
            tokens["mia"],
            "POST",
            "/workspaces",
            json={"name": f"few-{n}", "template": "base"},
        )
    few = cost()
    for n in range(27):
        call(
            client,
            tokens["mia"],
            "POST",
            "/workspaces",
            json={"name": f"many-{n}", "repo": None, "template": "base"},
        )
    many = cost()
    assert len(call(client, tokens["mia"], "GET", "/workspaces").get_json()) == 30
    assert many == few, (few, many)


def test_a_repository_config_path_stays_inside_the_repository(app, tokens):
    """repo.config picks one of a repository's devcontainer configs: only a relative
    path that stays inside and names a devcontainer.json; nothing is created otherwise.
    (A config that is a link leading outside is refused when the job reads it:
    tests/test_devcontainer_unit.py and app.devcontainer.inputs.)"""
    client = app.test_client()
    before = _counts()
    repo = "https://git.example.invalid/team/app.git"
    for config, code in (
        ("../outside/devcontainer.json", "invalid_config"),
        (".devcontainer/../../devcontainer.json", "invalid_config"),
        ("/etc/devcontainer.json", "invalid_config"),
        (".devcontainer/a/settings.json", "invalid_config"),
        (".devcontainer\\a\\devcontainer.json", "invalid_config"),
        (".devcontainer/a\x00/devcontainer.json", "invalid_config"),
        ("   ", "invalid_config"),
        ("x/" * 200 + "devcontainer.json", "invalid_config"),
        (7, "invalid_repo"),
        (["devcontainer.json"], "invalid_repo"),
    ):
        refused = call(
            client,
            tokens["mia"],
            "POST",
            "/workspaces",
            json={"name": "cfg", "repo": {"url": repo, "config": config}},
        )
        assert refused.status_code == 422, (config, refused.get_json())
        assert refused.get_json()["error"]["code"] == code, (config, refused.get_json())
    assert _counts() == before
    taken = call(
        client,
        tokens["mia"],
        "POST",
        "/workspaces",
        json={"name": "cfg", "repo": {"url": repo, "config": ".devcontainer/a/devcontainer.json"}},
    )
    assert taken.status_code == 201, taken.get_json()
    assert taken.get_json()["repo"] == {
        "url": repo, "ref": None, "config": ".devcontainer/a/devcontainer.json",
    }  # fmt: skip
