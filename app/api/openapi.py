"""The OpenAPI document of ``/api/v2``. A test checks it against the registered routes."""

from flask import jsonify

from app import __version__
from app.api import bp
from app.states import Status

_ERROR = {"$ref": "#/components/responses/Error"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_WS = {"$ref": "#/components/schemas/Workspace"}
_KEY = {"$ref": "#/components/schemas/SshKey"}
_PORT = {
    "type": "object",
    "properties": {
        "port": {"type": "integer"},
        "label": {"type": "string", "nullable": True},
        "source": {"type": "string", "enum": ["config", "user"]},
        "shared": {"type": "boolean"},
        "url": {"type": "string"},
    },
}
_LIST = {
    "200": {
        "description": "a list",
        **{
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}
            }
        },
    }
}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PORT_NUMBER = {"name": "port", "in": "path", "required": True, "schema": {"type": "integer"}}


def _op(summary: str, responses: dict, **extra) -> dict:
    base = {"401": _ERROR, "404": _ERROR}
    return {"summary": summary, "responses": {**responses, **base}, **extra}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _transition(summary: str) -> dict:
    return {
        "post": _op(
            summary,
            {
                "202": {
                    "description": "accepted; the worker carries it out",
                    **_json({"type": "object"}),
                },
                "409": _ERROR,
            },
            parameters=[_ID],
        )
    }


DOCUMENT = {
    "openapi": "3.0.3",
    "info": {
        "title": "Berth API",
        "version": __version__,
        "description": "Workspaces for people and agents. Authenticate with "
        "`Authorization: Bearer <token>` (berth token create).",
    },
    "servers": [{"url": "/api/v2"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": {
                "description": "refused; the message says why",
                **_json(
                    {
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {
                                "type": "object",
                                "required": ["code", "message"],
                                "properties": {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            }
                        },
                    }
                ),
            }
        },
        "schemas": {
            "Workspace": {
                "type": "object",
                "required": ["id", "name", "owner", "status"],
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "owner": {"type": "string"},
                    "template": {"type": "string", "nullable": True},
                    "repo": {"type": "object", "nullable": True},
                    "parameters": {"type": "object"},
                    "status": {
                        "type": "string",
                        "enum": [str(s) for s in Status],
                    },
                    "error": {"type": "string", "nullable": True},
                    "created_at": {"type": "string", "format": "date-time"},
                    "ttl_expires_at": {"type": "string", "nullable": True},
                    "ssh": {
                        "type": "string",
                        "nullable": True,
                        "example": "ssh -p 2222 demo@berth.example",
                    },
                    "activity": {
                        "type": "object",
                        "nullable": True,
                        "properties": {
                            "last_at": {"type": "string", "format": "date-time"},
                            "source": {"type": "string"},
                            "detail": {"type": "string"},
                            "open_sessions": {"type": "object"},
                            "sources": {
                                "type": "object",
                                "description": "per source: last_at and detail",
                            },
                        },
                    },
                    "urls": {
                        "type": "object",
                        "description": "the IDE and the open ports in the browser",
                        "properties": {
                            "ide": {"type": "string"},
                            "ports": {"type": "object", "example": {"3000": "http://…"}},
                        },
                    },
                    "lifecycle": {
                        "type": "object",
                        "description": "what happens by itself if nobody uses the workspace",
                        "properties": {
                            "idle_timeout": {"type": "string", "example": "30m"},
                            "idle_since": {"type": "string", "nullable": True},
                            "stops_at": {"type": "string", "nullable": True},
                            "stop_rule": {
                                "type": "string",
                                "nullable": True,
                                "enum": ["idle", "max-runtime"],
                            },
                            "deletes_at": {"type": "string", "nullable": True},
                            "delete_rule": {
                                "type": "string",
                                "nullable": True,
                                "enum": ["ttl", "dormancy", "failed-cleanup"],
                            },
                            "warnings": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
            "SshKey": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "fingerprint": {"type": "string", "example": "SHA256:…"},
                    "public_key": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "last_used_at": {"type": "string", "nullable": True},
                },
            },
            "NewWorkspace": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z][a-z0-9]*(-[a-z0-9]+)*$"},
                    "template": {"type": "string"},
                    "repo": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {"url": {"type": "string"}, "ref": {"type": "string"}},
                    },
                    "parameters": {"type": "object"},
                    "ttl": {"type": "string", "example": "4h"},
                    "restore": {
                        "type": "string",
                        "description": "a workspace backup id: the volumes come from it",
                    },
                },
            },
        },
    },
    "paths": {
        "/me": {"get": _op("The caller's account", {"200": {"description": "the user"}})},
        "/templates": {
            "get": _op(
                "Templates to create workspaces from",
                {
                    "200": {
                        "description": "templates",
                        **_json({"type": "array", "items": {"type": "object"}}),
                    }
                },
            )
        },
        "/templates/{name}": {
            "patch": _op(
                "Admins and template admins: change a template's parameters, limits, "
                "approvals or enabled (scope admin)",
                {"200": {"description": "the template"}, "403": _ERROR, "422": _ERROR},
                parameters=[_path("name")],
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "parameters": {"type": "object"},
                                "limits": {"type": "object"},
                                "approvals": {"type": "object"},
                                "enabled": {"type": "boolean"},
                            },
                        }
                    ),
                },
            )
        },
        "/workspaces": {
            "get": _op(
                "Workspaces the caller may see",
                {"200": {"description": "workspaces", **_json({"type": "array", "items": _WS})}},
            ),
            "post": _op(
                "Create a workspace (built and started by the worker)",
                {
                    "201": {"description": "recorded", **_json(_WS)},
                    "400": _ERROR,
                    "409": _ERROR,
                    "422": _ERROR,
                },
                requestBody={
                    "required": True,
                    **_json({"$ref": "#/components/schemas/NewWorkspace"}),
                },
            ),
        },
        "/workspaces/{id}": {
            "get": _op(
                "One workspace",
                {"200": {"description": "the workspace", **_json(_WS)}},
                parameters=[_ID],
            ),
            "delete": _op(
                "Delete a workspace (volumes too, unless keep_volumes=true)",
                {"202": {"description": "accepted"}, "409": _ERROR},
                parameters=[
                    _ID,
                    {"name": "keep_volumes", "in": "query", "schema": {"type": "boolean"}},
                ],
            ),
        },
        "/workspaces/{id}/start": _transition("Start a stopped workspace"),
        "/workspaces/{id}/stop": _transition("Stop a workspace (SIGTERM, then kill)"),
        "/workspaces/{id}/restart": _transition("Stop and start again"),
        "/workspaces/{id}/rebuild": _transition("Rebuild the image; volumes are kept"),
        "/workspaces/{id}/logs": {
            "get": _op(
                "The latest job's log as Server-Sent Events, followed live",
                {
                    "200": {
                        "description": "text/event-stream: data lines, then an `end` event",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                parameters=[_ID, {"name": "follow", "in": "query", "schema": {"type": "boolean"}}],
            )
        },
        "/workspaces/{id}/exec": {
            "post": _op(
                "Run a command in a running workspace (collected, or streamed)",
                {
                    "200": {
                        "description": "finished",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "exit_code": {"type": "integer"},
                                    "stdout": {"type": "string"},
                                    "stderr": {"type": "string"},
                                    "timed_out": {"type": "boolean"},
                                },
                            }
                        ),
                    },
                    "409": _ERROR,
                    "422": _ERROR,
                },
                parameters=[_ID],
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["command"],
                            "properties": {
                                "command": {"type": "array", "items": {"type": "string"}},
                                "timeout": {"type": "number", "default": 60},
                                "stdin": {"type": "string"},
                                "stream": {
                                    "type": "boolean",
                                    "description": "NDJSON: {stream, data} lines as output "
                                    "comes, then {exit_code, timed_out}",
                                },
                            },
                        }
                    ),
                },
            )
        },
        "/workspaces/{id}/history": {
            "get": _op(
                "Status changes and jobs, newest first, with causes and reasons",
                {"200": {"description": "history", **_json({"type": "object"})}},
                parameters=[_ID],
            )
        },
        "/workspaces/{id}/backup": _transition("Back up the workspace's volumes (tarballs)"),
        "/workspaces/{id}/activity": {
            "post": _op(
                "Keep-alive: count as use for the idle auto-stop",
                {"200": {"description": "the workspace", **_json(_WS)}},
                parameters=[_ID],
                requestBody=_json({"type": "object", "properties": {"detail": {"type": "string"}}}),
            )
        },
        "/workspaces/{id}/ttl": {
            "put": _op(
                "Set or extend the deletion deadline: ttl from now, expires_at, or ttl null",
                {"200": {"description": "the workspace", **_json(_WS)}, "422": _ERROR},
                parameters=[_ID],
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "ttl": {"type": "string", "nullable": True, "example": "4h"},
                                "expires_at": {"type": "string", "format": "date-time"},
                            },
                        }
                    ),
                },
            )
        },
        "/workspaces/{id}/idle-timeout": {
            "put": _op(
                "Change the idle timeout within the template's range (0 = never, if allowed)",
                {"200": {"description": "the workspace", **_json(_WS)}, "422": _ERROR},
                parameters=[_ID],
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["idle_timeout"],
                            "properties": {"idle_timeout": {"type": "string", "example": "1h"}},
                        }
                    ),
                },
            )
        },
        "/workspaces/{id}/ports": {
            "get": _op(
                "Ports open in the browser, with their URLs",
                {"200": {"description": "ports", **_json({"type": "array", "items": _PORT})}},
                parameters=[_ID],
            )
        },
        "/workspaces/{id}/ports/{port}": {
            "put": _op(
                "Open a port in the browser, or change it (shared: every signed-in user)",
                {"200": {"description": "the port", **_json(_PORT)}, "422": _ERROR},
                parameters=[_ID, _PORT_NUMBER],
                requestBody=_json(
                    {
                        "type": "object",
                        "properties": {"shared": {"type": "boolean"}, "label": {"type": "string"}},
                    }
                ),
            ),
            "delete": _op(
                "Close a port (not one from forwardPorts)",
                {"204": {"description": "closed"}, "409": _ERROR},
                parameters=[_ID, _PORT_NUMBER],
            ),
        },
        "/backups": {
            "get": _op(
                "Workspace backups (own; all for admins) and, for admins, database backups",
                {
                    "200": {
                        "description": "backups, newest first",
                        **_json({"type": "array", "items": {"type": "object"}}),
                    }
                },
            )
        },
        "/users/me/keys": {
            "get": _op(
                "The caller's SSH public keys",
                {"200": {"description": "keys", **_json({"type": "array", "items": _KEY})}},
            ),
            "post": _op(
                "Add an SSH public key (OpenSSH one-line format)",
                {"201": {"description": "added", **_json(_KEY)}, "422": _ERROR},
                requestBody={
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["public_key"],
                            "properties": {
                                "public_key": {"type": "string"},
                                "name": {"type": "string"},
                            },
                        }
                    ),
                },
            ),
        },
        "/users/me/keys/{id}": {
            "delete": _op(
                "Remove one of the caller's SSH keys",
                {"204": {"description": "removed"}},
                parameters=[_ID],
            )
        },
        "/ssh": {
            "get": _op(
                "How to reach the SSH gateway: host, port and host key",
                {
                    "200": {
                        "description": "the gateway",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "host": {"type": "string"},
                                    "port": {"type": "integer"},
                                    "host_key": {"type": "string"},
                                    "host_key_fingerprint": {"type": "string"},
                                },
                            }
                        ),
                    }
                },
            )
        },
        "/workspaces/{id}/shares": {
            "get": _op("Who the workspace is shared with", _LIST),
        },
        "/workspaces/{id}/shares/{kind}/{name}": {
            "put": _op(
                "Share with a user (kind users) or a group (kind groups); owner or admin",
                {**_LIST, "403": _ERROR, "422": _ERROR},
                parameters=[_ID, _path("kind"), _path("name")],
            ),
            "delete": _op(
                "Stop sharing with that user or group",
                {"204": {"description": "revoked"}, "403": _ERROR},
                parameters=[_ID, _path("kind"), _path("name")],
            ),
        },
        "/workspaces/{id}/egress": {
            "get": _op(
                "Egress: whether Berth controls it, the allowlist (template's and the "
                "workspace's own) and the latest connection attempts and DNS lookups",
                {"200": {"description": "the egress view"}},
                parameters=[_ID],
            ),
            "put": _op(
                'Replace the workspace\'s own allowlist: {"allow": ["host", "host:port", '
                '"*.domain"]} (not with a token limited to the workspace)',
                {"200": {"description": "the egress view"}, "403": _ERROR, "422": _ERROR},
                parameters=[_ID],
                requestBody={"required": True, **_json({"type": "object"})},
            ),
        },
        "/workspaces/{id}/files": {
            "get": _op(
                "The file at ?path= (relative to the workspace folder, or absolute), or a tar "
                "of the directory there, read as the workspace user",
                {"200": {"description": "the bytes"}, "409": _ERROR},
                parameters=[_ID],
            ),
            "put": _op(
                "Write the request body to ?path= as the workspace user (parents made)",
                {"201": {"description": "written"}, "409": _ERROR, "413": _ERROR, "422": _ERROR},
                parameters=[_ID],
            ),
        },
        "/workspaces/{id}/done": {
            "post": _op(
                'An agent sandbox is finished: {"outcome": "success"|"failure", "summary"}; '
                "recorded, then the sandbox is deleted",
                {"202": {"description": "deleting"}, "409": _ERROR, "422": _ERROR},
                parameters=[_ID],
            )
        },
        "/workspaces/{id}/recordings": {
            "get": _op("Recorded SSH sessions and execs, newest first", _LIST, parameters=[_ID])
        },
        "/workspaces/{id}/recordings/{recording}": {
            "get": _op(
                "A recording: asciicast v2 (SSH) or JSON (exec: command, output, exit code)",
                {"200": {"description": "the recording"}, "410": _ERROR},
                parameters=[_ID, _path("recording")],
            )
        },
        "/users/me/tokens": {
            "get": _op("The caller's API tokens (never their secret)", _LIST),
            "post": _op(
                "Create a token: name, scopes (a subset of the caller's), lifetime like 4h "
                "(within the instance's maximum), workspace (limits it to that one)",
                {"201": {"description": "the token, shown once", **_json({"type": "object"})}},
                requestBody={"required": True, **_json({"type": "object"})},
            ),
        },
        "/users/me/tokens/{id}": {
            "delete": _op(
                "Revoke one of the caller's tokens",
                {"204": {"description": "revoked"}},
                parameters=[_ID],
            )
        },
        "/users": {"get": _op("Everyone, with role and groups (admins, auditors)", _LIST)},
        "/users/{name}": {
            "patch": _op(
                "Change a person's role (admins)",
                {"200": {"description": "the person"}, "403": _ERROR, "422": _ERROR},
                parameters=[_path("name")],
                requestBody={"required": True, **_json({"type": "object"})},
            )
        },
        "/groups": {
            "get": _op("Groups and their members", _LIST),
            "post": _op(
                "Create a group (admins)",
                {"201": {"description": "the group"}, "403": _ERROR, "422": _ERROR},
                requestBody={"required": True, **_json({"type": "object"})},
            ),
        },
        "/groups/{name}/members/{user}": {
            "put": _op(
                "Add a person to a group (admins)",
                {"200": {"description": "the group"}, "403": _ERROR},
                parameters=[_path("name"), _path("user")],
            ),
            "delete": _op(
                "Remove a person from a group (admins)",
                {"204": {"description": "removed"}, "403": _ERROR},
                parameters=[_path("name"), _path("user")],
            ),
        },
        "/quotas/{kind}/{name}": {
            "get": _op(
                "A quota of a user (kind users) or group (kind groups) and its usage",
                {"200": {"description": "limits and usage"}, "403": _ERROR},
                parameters=[_path("kind"), _path("name")],
            ),
            "put": _op(
                "Set a quota: max_workspaces, max_running, max_cpu, max_memory_mb (admins)",
                {"200": {"description": "limits and usage"}, "403": _ERROR, "422": _ERROR},
                parameters=[_path("kind"), _path("name")],
                requestBody={"required": True, **_json({"type": "object"})},
            ),
        },
        "/costs": {
            "get": _op(
                "Cost for a period (since, until; default this month) by workspace, user or "
                "group (by=); format=csv for a spreadsheet. Own workspaces; all for admins "
                "and auditors",
                {"200": {"description": "the report"}, "403": _ERROR, "422": _ERROR},
            )
        },
        "/budgets": {"get": _op("Groups' monthly budgets and this month's spending", _LIST)},
        "/budgets/{name}": {
            "put": _op(
                "Set a group's monthly budget: monthly (null removes it), hard_stop (admins)",
                {"200": {"description": "the budget"}, "403": _ERROR, "422": _ERROR},
                parameters=[_path("name")],
                requestBody={"required": True, **_json({"type": "object"})},
            )
        },
        "/audit": {
            "get": _op(
                "Audit records, newest first, filtered by user, workspace (owner.name), "
                "action (prefix), since, until, limit; format=jsonl exports oldest first "
                "(admins, auditors; scope admin)",
                {**_LIST, "403": _ERROR, "422": _ERROR},
            )
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3"}},
            }
        },
    },
}


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
