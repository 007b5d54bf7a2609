"""The OpenAPI document of ``/api/v2``, written from the routes themselves: their rule,
methods and docstring (Flask), the scope they need (``token_required``) and the models
they declare (``@described``). Nothing here names a path."""

from __future__ import annotations

import inspect
import re

from flask import Flask, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import __version__
from app.api import bp, schemas
from app.api.spec import described, spec_of

PREFIX = "/api/v2"
_REF = "#/components/schemas/{model}"
_ERROR = {"$ref": "#/components/responses/Error"}
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
# Statuses the API gives for what it checks around every view (auth, JSON, size).
_WHY = {
    400: "the body is not a JSON object",
    401: "no valid token",
    403: "the token's scope, the caller's role or the token's workspace forbids it",
    404: "not there, or not visible to the caller",
    413: "the body is too large",
    422: "the input is invalid: the message names the field and the problem",
}


def document(app: Flask) -> dict:
    routes = [
        (rule, method, app.view_functions[rule.endpoint])
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
        if rule.rule.startswith(PREFIX + "/")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]
    models = _models(spec_of(view) for _, _, view in routes)
    refs, top = models_json_schema(models, ref_template=_REF)
    paths: dict[str, dict] = {}
    for rule, method, view in routes:
        path = _PARAM.sub(r"{\2}", rule.rule[len(PREFIX) :])
        paths.setdefault(path, {})[method.lower()] = _operation(rule, view, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Berth API",
            "version": __version__,
            "description": "Workspaces for people and agents. Authenticate with "
            "`Authorization: Bearer <token>` (berth token create).",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "refused; the message says why",
                    "content": {
                        "application/json": {"schema": refs[(schemas.Error, "serialization")]}
                    },
                }
            },
            "schemas": top.get("$defs", {}),
        },
    }


def _models(specs) -> list[tuple[type[BaseModel], str]]:
    found = {(schemas.Error, "serialization")}
    for spec in specs:
        if spec is None:
            continue
        if spec.body is not None:
            found.add((spec.body, "validation"))
        answer = spec.returns[0] if isinstance(spec.returns, list) else spec.returns
        if isinstance(answer, type) and issubclass(answer, BaseModel):
            found.add((answer, "serialization"))
    return sorted(found, key=lambda pair: (pair[0].__name__, pair[1]))


def _operation(rule, view, refs) -> dict:
    spec = spec_of(view)
    assert spec is not None, f"{rule.endpoint} declares nothing with @described"
    doc = inspect.cleandoc(view.__doc__ or "")
    assert doc, f"{rule.endpoint} has no docstring: it is the route's summary"
    summary, _, more = doc.partition("\n\n")
    scope = getattr(view, "berth_scope", "public")
    op: dict = {
        "operationId": rule.endpoint.removeprefix("api."),
        "summary": " ".join(summary.split()),
    }
    if more:
        op["description"] = more
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if converter == "int" else "string"},
        }
        for converter, name in _PARAM.findall(rule.rule)
    ]
    if spec.query is not None:
        parameters += _query_parameters(spec.query)
    if parameters:
        op["parameters"] = parameters
    errors = set(spec.errors)
    if scope == "public":
        op["security"] = []
    else:
        op["x-berth-scope"] = scope or "any"
        errors |= {401, 403}
    if parameters and any(p["in"] == "path" for p in parameters):
        errors.add(404)
    if spec.body is not None:
        op["requestBody"] = {
            "required": not spec.body_optional,
            "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
        }
        errors |= {400, 422}
    if spec.query is not None:
        errors.add(422)
    op["responses"] = {str(spec.status): _answer(spec, refs)}
    for status in sorted(errors):
        op["responses"][str(status)] = {**_ERROR, "description": _WHY.get(status, "refused")}
    return op


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(ref_template=_REF)
    out = []
    for name, prop in schema.get("properties", {}).items():
        param = {"name": name, "in": "query", "required": name in schema.get("required", [])}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        out.append({**param, "schema": prop})
    return out


def _answer(spec, refs) -> dict:
    returns = spec.returns
    if returns is None:
        return {"description": "done; no content"}
    if isinstance(returns, str):  # a media type: bytes or text, not JSON
        return {"description": returns, "content": {returns: {"schema": {"type": "string"}}}}
    many = isinstance(returns, list)
    model = returns[0] if many else returns
    schema = {"type": "object"} if model is dict else refs[(model, "serialization")]
    if many:
        schema = {"type": "array", "items": schema}
    description = inspect.cleandoc(model.__doc__ or "") if model is not dict else ""
    description = description or ("a list" if many else "the answer")
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@bp.get("/openapi.json")
@described(returns=dict)
def openapi_document():
    """This document (OpenAPI 3.1), written from the routes and their models."""
    cache = current_app.extensions.setdefault("berth_openapi", {})
    if "document" not in cache:
        cache["document"] = document(current_app)
    return jsonify(cache["document"])
