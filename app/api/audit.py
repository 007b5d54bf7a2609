"""The audit log over the API, for admins and auditors (token scope ``admin``)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, jsonify, request

from app import audit
from app.api import bp
from app.api.auth import require_right, token_required
from app.api.errors import ApiError


def parse_time(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 time (naive UTC, as stored), or None; refuses anything else by name."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            422, "invalid_time", f"{name} must be an ISO 8601 time like 2026-11-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


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
