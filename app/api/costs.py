"""Cost over the API: per workspace, user or group for any period (JSON or CSV), and the
groups' monthly budgets. People see their own workspaces' cost; admins and auditors all."""

from __future__ import annotations

import csv
import io

from flask import Response, jsonify, request

from app import authz, costs
from app.api import bp
from app.api.audit import parse_time
from app.api.auth import current_token, require_right, token_required
from app.http import auditing
from app.http.errors import ApiError, json_body
from app.models import Budget, Group, utcnow


def _csv(header: list[str], rows: list[list]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue(), mimetype="text/csv")


@bp.get("/costs")
@token_required("workspaces:read", any_workspace=False)
def cost_report():
    """?since=&until= (ISO 8601; default this month), by=workspace|user|group, format=csv."""
    now = utcnow()
    since = parse_time("since", request.args.get("since")) or costs.month_start(now)
    until = parse_time("until", request.args.get("until")) or now
    if until <= since:
        raise ApiError(422, "invalid_period", "until must be after since")
    by = request.args.get("by", "workspace")
    if by not in ("workspace", "user", "group"):
        raise ApiError(422, "invalid_grouping", "by must be workspace, user or group")
    user = current_token().user
    everything = authz.can(user, "workspaces.read_all")
    if by == "group":
        require_right("workspaces.read_all", "see the cost of groups")
    lines = costs.workspace_costs(since, until, None if everything else [user.id])
    period = {"since": since.isoformat() + "Z", "until": until.isoformat() + "Z"}
    if by == "workspace":
        rows = [line.to_dict() for line in lines]
    else:
        totals = costs.by_user(lines) if by == "user" else costs.by_group(lines)
        rows = [{by: key, "cost": round(value, 6)} for key, value in sorted(totals.items())]
    if request.args.get("format") == "csv":
        header = list(rows[0]) if rows else [by, "cost"]
        return _csv(header, [[row[k] for k in header] for row in rows])
    return jsonify(
        {**period, "by": by, "total": round(sum(x.cost for x in lines), 6), "rows": rows}
    )


@bp.get("/budgets")
@token_required("workspaces:read", any_workspace=False)
def list_budgets():
    require_right("workspaces.read_all", "see budgets")
    budgets = Budget.select(Budget, Group).join(Group).order_by(Group.name)
    return jsonify([costs.budget_dict(b) for b in budgets])


@bp.put("/budgets/<name>")
@token_required("admin", any_workspace=False)
def set_budget(name):
    """{"monthly": amount or null, "hard_stop": bool}"""
    require_right("users.manage", "set budgets")
    group = Group.get_or_none(Group.name == name)
    if group is None:
        raise ApiError(404, "not_found", f"there is no group named {name!r}")
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"monthly", "hard_stop"}:
        raise ApiError(422, "invalid_budget", 'send {"monthly": 100, "hard_stop": false}')
    try:
        budget = costs.set_budget(group, body.get("monthly"), body.get("hard_stop", False))
    except costs.CostError as exc:
        raise ApiError(422, "invalid_budget", str(exc)) from None
    auditing.record("budget.set", f"group:{group.name}", **body)
    return jsonify(costs.budget_dict(budget) if budget else {"group": group.name, "monthly": None})
