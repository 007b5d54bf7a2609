"""The audit log over the API, for admins and auditors (token scope ``admin``)."""

from __future__ import annotations

from datetime import datetime

from flask import Response, jsonify, request

from app import audit, durations
from app.api import bp
from app.api.auth import require_right, token_required
from app.http.errors import ApiError


def parse_time(name: str, value: str | None) -> datetime | None:
    """A time from the query (app.durations.parse_time), refused (422) by name."""
    try:
        return durations.parse_time(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_time", f"{name}: {exc}") from None


@bp.get("/audit")
@token_required("admin", any_workspace=False)
def audit_log():
    """Filter by user, workspace (owner.name), action (a prefix) and time; newest first."""
    require_right("audit.read", "read the audit log")
    args = request.args
    query = audit.search(
        actor=args.get("user"),
        workspace=args.get("workspace"),
        action=args.get("action"),
        since=parse_time("since", args.get("since")),
        until=parse_time("until", args.get("until")),
    )
    try:
        limit = min(int(args.get("limit", 200)), 5000)
    except ValueError:
        raise ApiError(422, "invalid_limit", "limit must be a whole number") from None
    if args.get("format") == "jsonl":
        return Response(
            "".join(line + "\n" for line in audit.export(parse_time("since", args.get("since")))),
            mimetype="application/x-ndjson",
        )
    return jsonify([audit.to_dict(row) for row in query.limit(limit)])
