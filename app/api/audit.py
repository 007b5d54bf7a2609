"""The audit log over the API, for admins and auditors (token scope ``admin``)."""

from __future__ import annotations

from flask import Response, jsonify

from app import audit
from app.api import bp, schemas
from app.api.auth import require_right, token_required
from app.api.spec import described, request_query


@bp.get("/audit")
@token_required("admin", any_workspace=False)
@described(query=schemas.AuditQuery, returns=[dict])
def audit_log():
    """Audit records, newest first (admins, auditors).

    Filtered by user, workspace (owner.name), action (a prefix), since, until and
    limit; format=jsonl exports them all, oldest first."""
    require_right("audit.read", "read the audit log")
    args = request_query()
    query = audit.search(
        actor=args.user,
        workspace=args.workspace,
        action=args.action,
        since=args.since,
        until=args.until,
    )
    if args.format == "jsonl":
        return Response(
            "".join(line + "\n" for line in audit.export(args.since)),
            mimetype="application/x-ndjson",
        )
    return jsonify([audit.to_dict(row) for row in query.limit(min(args.limit, 5000))])
