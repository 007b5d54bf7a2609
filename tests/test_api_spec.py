"""The API's one description (app.api.schemas and ``@described``): the OpenAPI document
written from it is valid and complete, and a request it refuses gets the API's error
with the field's code and words. No services: an app on SQLite in a temporary folder."""

from __future__ import annotations

import inspect
import re

import pytest
from openapi_spec_validator import validate

from app.api import schemas
from app.api.openapi import document
from app.api.spec import spec_of
from app.api.spec import validate as check
from app.config import Settings
from app.factory import create_app
from app.http.errors import ApiError


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("spec") / "data"
    return create_app(Settings.load({"data_dir": str(data)}, environ={}))


def _api_views(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v2/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v2") :])
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                yield path, method.lower(), app.view_functions[rule.endpoint]


def test_the_document_is_valid_openapi_and_served_as_written(app):
    written = document(app)
    validate(written)
    assert written["openapi"].startswith("3.")
    error = written["components"]["responses"]["Error"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/Error"}
    assert written["components"]["schemas"]["Error"]["required"] == ["error"]
    served = app.test_client().get("/api/v2/openapi.json")
    assert served.status_code == 200 and served.get_json() == written


def test_every_route_is_documented_with_its_body_query_and_errors(app):
    paths = document(app)["paths"]
    routes = list(_api_views(app))
    assert {(p, m) for p, m, _ in routes} == {(p, m) for p in paths for m in paths[p]}
    for path, method, view in routes:
        op, spec = paths[path][method], spec_of(view)
        assert op["summary"], (method, path)
        source = inspect.getsource(inspect.unwrap(view))
        # A view reads its body or query only through its declared model.
        assert ("request_body()" in source) == (spec.body is not None), (method, path)
        assert ("request_query()" in source or "_path(" in source) == (spec.query is not None)
        if spec.body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/" + spec.body.__name__), (method, path)
            assert {"400", "422"} <= set(op["responses"]), (method, path)
        else:
            assert "requestBody" not in op, (method, path)
        if spec.query is not None:
            named = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            assert named == set(spec.query.model_fields), (method, path)
        if getattr(view, "berth_scope", "public") != "public":
            assert {"401", "403"} <= set(op["responses"]), (method, path)
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                assert answer["$ref"] == "#/components/responses/Error", (method, path)


def _refused(model, data) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check(model, data)
    assert caught.value.status == 422
    return caught.value


@pytest.mark.parametrize(
    ("model", "data", "code", "message"),
    [
        (
            schemas.Exec,
            {"command": ["ls"], "timeout": 0},
            "invalid_timeout",
            "timeout: must be a number of seconds from 1 to 3600",
        ),
        (schemas.Exec, {"command": ["ls"], "timeout": True}, "invalid_timeout", "timeout: "),
        (schemas.Exec, {"command": []}, "invalid_command", "command: must be a non-empty array"),
        (schemas.Exec, {"command": ["ls", 1]}, "invalid_command", "command: must be"),
        (schemas.Exec, {"command": ["ls"], "stdin": 5}, "invalid_stdin", "stdin: must be text"),
        (schemas.Exec, {"command": ["ls"], "colour": 1}, "unknown_field", "unknown field 'colour'"),
        (schemas.NewWorkspace, {"name": "ok", "wait": 0}, "invalid_wait", "wait: must be true"),
        (schemas.NewWorkspace, {"name": "ok", "wait": 1801}, "invalid_wait", "wait: "),
        (schemas.NewWorkspace, {"name": "Bad Name"}, "invalid_name", "name: is not allowed"),
        (schemas.NewWorkspace, {"name": "ok", "template": ["b"]}, "unknown_template", "template"),
        (schemas.TtlChange, {}, "invalid_ttl", 'send exactly one of "ttl"'),
        (schemas.TtlChange, {"ttl": "4h", "x": 1}, "invalid_ttl", "unknown field 'x'"),
        (schemas.EgressChange, {"allow": "pypi.org"}, "invalid_egress", "allow: "),
        (schemas.BudgetChange, {"monthly": -1}, "invalid_budget", "monthly: "),
        (schemas.BudgetChange, {"weekly": 1}, "invalid_budget", "unknown field 'weekly'"),
        (schemas.Done, {"outcome": "maybe"}, "invalid_done", "outcome: "),
        (schemas.UserChange, {"role": "king"}, "invalid_role", "role: "),
        (schemas.NewToken, {"scopes": ["root"]}, "invalid_token_request", "scopes: scope 'root'"),
        (schemas.AuditQuery, {"limit": "many"}, "invalid_limit", "limit: must be a whole number"),
        (schemas.AuditQuery, {"since": "yesterday"}, "invalid_time", "since: 'yesterday' is not"),
        (schemas.CostQuery, {"by": "team"}, "invalid_grouping", "by: must be workspace, user"),
        (schemas.FilePath, {"path": ""}, "invalid_path", "path: give ?path="),
        (schemas.FilePath, {}, "invalid_path", "path: is required"),
        (schemas.NewKey, {}, "invalid_key", "public_key: is required"),
        (schemas.FilePath, {"path": "a\x00b"}, "invalid_path", "path: give ?path="),
    ],
)
def test_a_refused_request_names_the_field_and_keeps_its_code(model, data, code, message):
    refused = _refused(model, data)
    assert refused.code == code and refused.message.startswith(message), refused.message


def test_well_formed_requests_are_read_as_before():
    assert check(schemas.NewWorkspace, {"name": "ok", "wait": True}).wait is True
    assert check(schemas.NewWorkspace, {"name": "ok", "wait": 30}).wait == 30
    assert check(schemas.Exec, {"command": ["ls"]}).timeout == 60
    assert check(schemas.AuditQuery, {"limit": "7"}).limit == 7
    assert check(schemas.DeleteOptions, {"keep_volumes": "yes"}).keep_volumes is True
    assert check(schemas.LogOptions, {"follow": "no"}).follow is False
    assert check(schemas.LogOptions, {}).follow is True
    # Routes that ignored fields they do not know still do.
    assert check(schemas.KeepAlive, {"detail": "x", "other": 1}).detail == "x"
