"""``berth mcp`` driven by the MCP Python SDK's own client, over stdio and streamable
HTTP, against a real Berth: create a sandbox, run a command, files, list, delete."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import httpx2
import requests
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.services import free_port, in_thread, wait_until


def _data(result) -> object:
    """A tool's answer: its structured content, else its text parsed as JSON or as is."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content.get("result", result.structured_content)
    text = result.content[0].text
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _session_work(session: ClientSession, stack) -> None:
    await session.initialize()
    names = {tool.name for tool in (await session.list_tools()).tools}
    assert names == {
        "create_sandbox",
        "exec",
        "read_file",
        "write_file",
        "list_workspaces",
        "delete_workspace",
    }
    box = _data(await session.call_tool("create_sandbox", {"name": "mcp-box", "ttl": "30m"}))
    assert box["status"] == "running", box
    ran = _data(
        await session.call_tool(
            "exec",
            {
                "workspace_id": box["id"],
                "command": ["sh", "-c", "tr a-z A-Z; id -un"],
                "stdin": "hi\n",
            },
        )
    )
    assert ran["exit_code"] == 0 and ran["stdout"] == "HI\ndev\n", ran
    wrote = _data(
        await session.call_tool(
            "write_file",
            {"workspace_id": box["id"], "path": "notes/plan.md", "content": "# plan\n"},
        )
    )
    assert "wrote 7 bytes to /workspaces/sandbox/notes/plan.md" in wrote
    read = _data(
        await session.call_tool("read_file", {"workspace_id": box["id"], "path": "notes/plan.md"})
    )
    assert read == "# plan\n"
    listed = _data(await session.call_tool("list_workspaces", {}))
    assert any(w["id"] == box["id"] and w["name"] == "mcp-box" for w in listed)
    # A refusal reaches the agent as a tool error with Berth's reason.
    refused = await session.call_tool("exec", {"workspace_id": 99999, "command": ["true"]})
    assert refused.is_error and "there is no workspace 99999" in refused.content[0].text
    gone = _data(await session.call_tool("delete_workspace", {"workspace_id": box["id"]}))
    assert "being deleted" in gone
    stack.clients["ann"].wait(box["id"], "deleted", timeout=120)


def test_mcp_over_stdio(stack):
    token = stack.cli("token", "create", "ann", "--name", "mcp").stdout.strip()
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "app", "mcp", "--url", stack.url, "--token", token]
    )

    async def main():
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await _session_work(session, stack)

    in_thread(lambda: anyio.run(main))


def test_mcp_over_streamable_http(stack):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "mcp", "--url", stack.url, "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    endpoint = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_until(lambda: _answers(endpoint), timeout=30, what="berth mcp --http")
        # No token, or one Berth refuses: 401 before any MCP.
        for headers in ({}, {"Authorization": "Bearer berth_" + "x" * 40}):
            refused = requests.post(endpoint, json={}, headers=headers, timeout=10)
            assert refused.status_code == 401
        token = stack.cli("token", "create", "ann", "--name", "mcp-http").stdout.strip()

        async def main():
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=300) as http,
                streamable_http_client(endpoint, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await _session_work(session, stack)

        in_thread(lambda: anyio.run(main))
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True
