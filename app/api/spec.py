"""What a route takes and gives, declared once: ``@described`` names the pydantic models
of its JSON body, its query and its answer. The same declaration validates the request
(``request_body()``, ``request_query()``) and writes the route into the OpenAPI document
(app.api.openapi).

Validation is lazy on purpose: a view asks for its body where it asked before, after
its own checks (is the workspace there, may the caller see it, is it running), so a
caller without access gets the 404 before any 422 tells them about their input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from app.http.errors import ApiError, json_body


@dataclass(frozen=True)
class Refusal:
    """Annotated metadata on a field: the error code its invalid values get, and the
    problem said in words (None: pydantic's own words)."""

    code: str
    message: str | None = None


@dataclass(frozen=True)
class Spec:
    body: type[BaseModel] | None = None
    body_optional: bool = False  # an empty body is {}
    query: type[BaseModel] | None = None
    status: int = 200
    returns: Any = None  # a model, [model] for a list, a media type, or None (no content)
    errors: tuple[int, ...] = ()  # statuses the view itself may answer with
    extra: dict = field(default_factory=dict)


def described(
    *,
    body: type[BaseModel] | None = None,
    body_optional: bool = False,
    query: type[BaseModel] | None = None,
    status: int = 200,
    returns: Any = None,
    errors: tuple[int, ...] = (),
):
    """Declare a route's body, query and answer (see the module's docstring)."""
    spec = Spec(body, body_optional, query, status, returns, tuple(errors))

    def decorate(view):
        view.berth_spec = spec  # functools.wraps copies it onto the outer decorators
        return view

    return decorate


def spec_of(view) -> Spec | None:
    return getattr(view, "berth_spec", None)


def _current() -> Spec:
    spec = spec_of(current_app.view_functions[request.endpoint])
    assert spec is not None, f"{request.endpoint} declares nothing with @described"
    return spec


def request_body() -> Any:
    """The request's JSON body as the route's model, or the API's 400/422."""
    spec = _current()
    assert spec.body is not None, f"{request.endpoint} declares no body"
    return validate(spec.body, json_body(optional=spec.body_optional))


def request_query() -> Any:
    """The query string as the route's model, or the API's 422."""
    spec = _current()
    assert spec.query is not None, f"{request.endpoint} declares no query"
    return validate(spec.query, request.args.to_dict())


def validate(model: type[BaseModel], data: dict) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise refusal(model, exc) from None


def refusal(model: type[BaseModel], exc: ValidationError) -> ApiError:
    """One error, named by field: an unknown field first (a misspelt name explains the
    rest), else the first problem, with the code its field (or its model) declares."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        name = ".".join(str(p) for p in unknown[0]["loc"])
        code = getattr(model, "unknown_code", "unknown_field")
        return ApiError(422, code, f"unknown {getattr(model, 'unknown_noun', 'field')} {name!r}")
    first = errors[0]
    loc = first["loc"]
    rule = _rule(model, loc[0]) if loc else None
    code = rule.code if rule else getattr(model, "error_code", "invalid_request")
    if first["type"] == "missing":
        return ApiError(422, code, f"{loc[0]}: is required")
    if rule and rule.message:
        # The field's own words are about the whole field: name it, not the union
        # member or list index pydantic tried.
        return ApiError(422, code, f"{loc[0]}: {rule.message}")
    words = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    where = ".".join(str(p) for p in loc)
    return ApiError(422, code, f"{where}: {words}" if where else words)


def _rule(model: type[BaseModel], name) -> Refusal | None:
    info = model.model_fields.get(name) if isinstance(name, str) else None
    if info is None:
        return None
    return next((m for m in info.metadata if isinstance(m, Refusal)), None)
