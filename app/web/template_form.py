"""The template editor's form: a field for each thing admins change (the parameters'
defaults and bounds, the limits and lifecycle, the prices), read back into the same
objects the API takes, so app.workspaces.templates.update checks both alike. What the
form has no field for (a limit it does not know) is kept as it was."""

from __future__ import annotations

import json
import re

from app.costs import PRICE_KEYS
from app.models import AuditEvent, Template

NUMBER_LIMITS = {
    "max_cpu": ("Most CPUs a workspace may ask for", float),
    "max_memory_mb": ("Most memory a workspace may ask for (MB)", int),
    "pids": ("Most processes in a workspace", int),
    "max_ttl_hours": ("Longest time to live (hours)", float),
    "pool_size": ("Warm pool: workspaces kept ready (agent templates)", int),
}
DURATION_LIMITS = {
    "max_runtime": "Stop after running this long, used or not",
    "warn_before": "Warn owners this long before",
    "dormant_after": "Delete when stopped longer than",
    "failed_cleanup_after": "Delete when failed longer than",
    "ide_idle_timeout": "Stop the browser IDE after no connection for",
    "expected_duration": "Alert when a sandbox runs longer than",
    "cpu_alert_after": "Alert when a sandbox's CPU is pegged for",
}
FLAG_LIMITS = {
    "dormant_backup": "Back up a dormant workspace before deleting it",
    "record_sessions": "Record SSH sessions and API commands",
}
PRICE_LABELS = {
    "per_hour": "Per running hour",
    "per_cpu_hour": "Per CPU-hour",
    "per_gb_hour": "Per GB of memory per hour",
}
BOUNDS = ("default", "min", "max")


class FormError(ValueError):
    """A field that is not what it must be; the message names it by its label, and
    ``field`` is its input's name."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def field_of(message: str) -> str | None:
    """The input a refusal of templates.update is about ("limits.pids must be ...")."""
    found = re.match(r"(limits|pricing|parameters)\.(\w+)", message)
    if not found:
        return "approvals" if message.startswith("approvals") else None
    part, name = found.groups()
    return {"limits": f"limit.{name}", "pricing": f"price.{name}", "parameters": f"param.{name}"}[
        part
    ]


def _number(text: str, label: str, kind=float, field: str | None = None):
    text = text.strip()
    if text == "":
        return None
    if len(text) > 40:
        raise FormError(f"{label}: {text[:20]!r}... is too long for a number", field)
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        whole = "a whole number" if kind is int else "a number"
        raise FormError(f"{label}: {text!r} is not {whole}", field) from None
    # "2" stays 2, as the API would have it, not 2.0.
    return int(text) if kind is not int and text.lstrip("-").isdigit() else value


def read(form, template: Template) -> dict:
    """The changes the form asks for, as templates.update takes them."""
    parameters = json.loads(template.parameters or "{}")
    for name, spec in parameters.items():
        numeric = spec.get("type") in ("number", "integer")
        for bound in BOUNDS:
            field = f"param.{name}.{bound}"
            if field not in form:
                continue
            text = form[field].strip()
            if text == "":
                spec.pop(bound, None)
            elif numeric:
                kind = int if spec.get("type") == "integer" else float
                spec[bound] = _number(text, f"{name} ({bound})", kind, f"param.{name}")
            else:
                spec[bound] = text
    limits = json.loads(template.limits or "{}")
    for key, (label, kind) in NUMBER_LIMITS.items():
        value = _number(form.get(f"limit.{key}", ""), label, kind, f"limit.{key}")
        if value is None:
            limits.pop(key, None)
        else:
            limits[key] = value
    for key in DURATION_LIMITS:
        text = form.get(f"limit.{key}", "").strip()
        if text:
            limits[key] = text
        else:
            limits.pop(key, None)
    for key in FLAG_LIMITS:
        if form.get(f"limit.{key}") == "on":
            limits[key] = True
        else:
            limits.pop(key, None)
    pricing = {}
    for key in PRICE_KEYS:
        value = _number(
            form.get(f"price.{key}", ""), PRICE_LABELS.get(key, key), float, f"price.{key}"
        )
        if value is not None:
            pricing[key] = value
    approvals_text = form.get("approvals", "").strip() or "{}"
    try:
        approvals = json.loads(approvals_text)
    except ValueError as exc:
        raise FormError(f"approvals is not valid JSON: {exc}", "approvals") from None
    return {
        "parameters": parameters,
        "limits": limits,
        "pricing": pricing,
        "approvals": approvals,
        "enabled": form.get("enabled") == "on",
    }


HISTORY_KEYS = ("enabled", "parameters", "limits", "pricing", "approvals")


def history(template: Template, limit: int = 50) -> list[dict]:
    """The template's recorded changes (its audit records), newest first; each save
    records which of HISTORY_KEYS it changed."""
    rows = (
        AuditEvent.select()
        .where(AuditEvent.target == f"template:{template.name}")
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    )
    found = []
    for row in rows:
        detail = json.loads(row.detail or "{}")
        found.append({"row": row, "detail": detail, "changed": detail.get("changed") or []})
    return found
