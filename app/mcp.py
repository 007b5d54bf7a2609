"""``berth mcp``: Berth's agent API as an MCP server (the MCP Python SDK), over stdio or
streamable HTTP. It is a client of Berth's REST API with the caller's token, so every
rule (scopes, single-workspace tokens, quotas, budgets, egress, audit) applies as is.

stdio: the token comes from ``--token`` / ``BERTH_TOKEN``. HTTP: every request carries
``Authorization: Bearer <Berth API token>``; requests without a valid one get 401.
"""

from __future__ import annotations

from typing import Any

import anyio
import requests
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

INSTRUCTIONS = (
    "Berth runs throwaway, sandboxed workspaces. create_sandbox gives you one ready for "
    "commands; run them with exec, move files with read_file and write_file, and "
    "delete_workspace when you are done. The sandbox reaches only the hosts on its "
    "egress allowlist."
)


class BerthApiError(ToolError):
    """What Berth answered when it refused; the agent sees it as the tool's error."""


class Api:
    """Berth's REST API with one token (blocking; called from worker threads)."""

    def __init__(self, url: str, token: str):
        self.base = url.rstrip("/") + "/api/v2"
        self.session = requests.Session()
        self.session.trust_env = False  # Berth is reached directly, not through a proxy
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, timeout: float = 120, **kwargs) -> requests.Response:
        response = self.session.request(method, self.base + path, timeout=timeout, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise BerthApiError(f"{error['message']} ({error['code']})")
            except (ValueError, KeyError, TypeError):
                raise BerthApiError(f"Berth answered {response.status_code}") from None
        return response


def build(url: str, token: str | None = None) -> MCPServer:
    """The MCP server; ``token`` for stdio, else each HTTP request's bearer token."""
    server = MCPServer("berth", instructions=INSTRUCTIONS)

    def api(ctx: Context) -> Api:
        request = ctx.request_context.request
        if request is not None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return Api(url, value.strip())
        if token:
            return Api(url, token)
        raise BerthApiError("no Berth API token: send 'Authorization: Bearer <token>'")

    async def run(ctx: Context, method: str, path: str, **kwargs) -> requests.Response:
        client = api(ctx)
        return await anyio.to_thread.run_sync(lambda: client.call(method, path, **kwargs))

    @server.tool()
    async def create_sandbox(
        ctx: Context,
        name: str,
        template: str = "agent-sandbox",
        ttl: str = "1h",
        egress: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a sandbox and wait until it is ready for commands. egress lists the
        host names (host, host:port, *.domain) it may reach; nothing else is reachable."""
        body = {"name": name, "template": template, "ttl": ttl, "wait": 600}
        if egress:
            body["egress"] = egress
        ws = (await run(ctx, "POST", "/workspaces", json=body, timeout=660)).json()
        return {k: ws.get(k) for k in ("id", "name", "status", "error", "ttl_expires_at")}

    @server.tool()
    async def exec(
        ctx: Context,
        workspace_id: int,
        command: list[str],
        stdin: str | None = None,
        timeout: int = 60,
    ) -> dict[str, Any]:
        """Run a command (an argv list; use ["sh", "-c", "…"] for a shell line) in the
        workspace as its user, in its folder; returns exit_code, stdout and stderr."""
        body: dict[str, Any] = {"command": command, "timeout": timeout}
        if stdin is not None:
            body["stdin"] = stdin
        path = f"/workspaces/{workspace_id}/exec"
        return (await run(ctx, "POST", path, json=body, timeout=timeout + 60)).json()

    @server.tool()
    async def read_file(ctx: Context, workspace_id: int, path: str) -> str:
        """The text of a file (relative paths are in the workspace folder)."""
        response = await run(ctx, "GET", f"/workspaces/{workspace_id}/files", params={"path": path})
        return response.content.decode(errors="replace")

    @server.tool()
    async def write_file(ctx: Context, workspace_id: int, path: str, content: str) -> str:
        """Write text to a file (parent folders are made)."""
        response = await run(
            ctx,
            "PUT",
            f"/workspaces/{workspace_id}/files",
            params={"path": path},
            data=content.encode(),
        )
        return f"wrote {response.json()['bytes']} bytes to {response.json()['path']}"

    @server.tool()
    async def list_workspaces(ctx: Context) -> list[dict[str, Any]]:
        """The workspaces this token may see."""
        rows = (await run(ctx, "GET", "/workspaces")).json()
        keys = ("id", "name", "owner", "template", "status")
        return [{k: row.get(k) for k in keys} for row in rows]

    @server.tool()
    async def delete_workspace(ctx: Context, workspace_id: int) -> str:
        """Delete a workspace and its volumes."""
        await run(ctx, "DELETE", f"/workspaces/{workspace_id}")
        return f"workspace {workspace_id} is being deleted"

    return server


def http_app(url: str, path: str = "/mcp"):
    """The streamable HTTP app, behind a check that each request carries a token Berth
    accepts (401 before any MCP processing otherwise)."""
    from starlette.responses import JSONResponse

    app = build(url).streamable_http_app(streamable_http_path=path, stateless_http=True)
    known: dict[str, float] = {}

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            scheme, _, value = headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
            if not token or not await anyio.to_thread.run_sync(_accepted, url, token, known):
                response = JSONResponse(
                    {"error": "send 'Authorization: Bearer <Berth API token>'"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="berth-mcp"'},
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def _accepted(url: str, token: str, known: dict[str, float]) -> bool:
    """Whether Berth accepts ``token`` (remembered for a minute)."""
    import time

    if known.get(token, 0) > time.monotonic():
        return True
    try:
        Api(url, token).call("GET", "/me", timeout=10)
    except (BerthApiError, requests.RequestException):
        return False
    known[token] = time.monotonic() + 60
    return True
