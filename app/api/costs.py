"""Cost over the API: per workspace, user or group for any period (JSON or CSV), and the
groups' monthly budgets. People see their own workspaces' cost; admins and auditors all."""

from __future__ import annotations

import csv
import io

from flask import Response, jsonify

from app import authz, costs
from app.api import bp, schemas
from app.api.auth import current_token, require_right, token_required
from app.api.spec import described, request_body, request_query
from app.http import auditing
from app.http.errors import ApiError
from app.models import Budget, Group, utcnow


def _csv(header: list[str], rows: list[list]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue(), mimetype="text/csv")


@bp.get("/costs")
@token_required("workspaces:read", any_workspace=False)
@described(query=schemas.CostQuery, returns=dict)
def cost_report():
    """Cost for a period (default this month) by workspace, user or group.

    format=csv for a spreadsheet. Own workspaces; all for admins and auditors."""
    now, query = utcnow(), request_query()
    since = query.since or costs.month_start(now)
    until = query.until or now
    if until <= since:
        raise ApiError(422, "invalid_period", "until must be after since")
    by = query.by
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
    if query.format == "csv":
        header = list(rows[0]) if rows else [by, "cost"]
        return _csv(header, [[row[k] for k in header] for row in rows])
    return jsonify(
        {**period, "by": by, "total": round(sum(x.cost for x in lines), 6), "rows": rows}
    )


@bp.get("/budgets")
@token_required("workspaces:read", any_workspace=False)
@described(returns=[dict])
def list_budgets():
    """Groups' monthly budgets and this month's spending."""
    require_right("workspaces.read_all", "see budgets")
    budgets = Budget.select(Budget, Group).join(Group).order_by(Group.name)
    return jsonify([costs.budget_dict(b) for b in budgets])


@bp.put("/budgets/<name>")
@token_required("admin", any_workspace=False)
@described(body=schemas.BudgetChange, returns=dict)
def set_budget(name):
    """Set a group's monthly budget: monthly (null removes it), hard_stop (admins)."""
    require_right("users.manage", "set budgets")
    group = Group.get_or_none(Group.name == name)
    if group is None:
        raise ApiError(404, "not_found", f"there is no group named {name!r}")
    body = request_body().model_dump(exclude_unset=True)
    try:
        budget = costs.set_budget(group, body.get("monthly"), body.get("hard_stop", False))
    except costs.CostError as exc:
        raise ApiError(422, "invalid_budget", str(exc)) from None
    auditing.record("budget.set", f"group:{group.name}", **body)
    return jsonify(costs.budget_dict(budget) if budget else {"group": group.name, "monthly": None})
