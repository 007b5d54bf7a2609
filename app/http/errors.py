"""The API's error shape: ``{"error": {"code": ..., "message": ...}}`` with the right status."""

from flask import g, jsonify, request

from app import audit


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def api_error(status: int, code: str, message: str):
    if status == 403:
        _audit_refusal(code, message)
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="berth"'
    return response


def is_api_request() -> bool:
    return request.path == "/api/v2" or request.path.startswith("/api/v2/")


def json_body(optional: bool = False) -> dict:
    """The request's JSON object, or a 400 that says what is wrong with it. ``optional``:
    an empty body is ``{}``."""
    if optional and not request.get_data(cache=True):
        return {}
    try:
        body = request.get_json(force=True)
    except Exception as exc:  # noqa: BLE001  (werkzeug's BadRequest, or the parser's own)
        reason = getattr(exc, "__cause__", None) or exc
        raise ApiError(
            400, "invalid_json", f"the request body is not valid JSON ({_short(reason)})"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return body


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _audit_refusal(code: str, message: str) -> None:
    """Every request a rule refused (scope, role, share, approval) is on record."""
    token = g.get("api_token")
    audit.record(
        "api.denied",
        actor=token.user.username if token is not None else "anonymous",
        source_ip=request.remote_addr,
        target=f"{request.method} {request.path}"[:160],
        outcome="denied",
        code=code,
        reason=message[:300],
        token=token.id if token is not None else None,
    )
