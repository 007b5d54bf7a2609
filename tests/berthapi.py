"""A small client for Berth's REST API, for tests and benchmarks."""

from __future__ import annotations

import time

import requests


class ApiError(AssertionError):
    pass


class Client:
    def __init__(self, base_url: str, token: str):
        self.base = base_url.rstrip("/") + "/api/v2"
        self.token = token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, expect: int | None = None, **kwargs):
        response = self.session.request(method, self.base + path, timeout=120, **kwargs)
        if expect is not None and response.status_code != expect:
            raise ApiError(
                f"{method} {path}: expected {expect}, got {response.status_code}: {response.text}"
            )
        return response

    def create(self, name: str, **body) -> dict:
        return self.call("POST", "/workspaces", 201, json={"name": name, **body}).json()

    def get(self, ws_id: int) -> dict:
        return self.call("GET", f"/workspaces/{ws_id}", 200).json()

    def act(self, ws_id: int, action: str) -> dict:
        return self.call("POST", f"/workspaces/{ws_id}/{action}", 202).json()

    def delete(self, ws_id: int, keep_volumes: bool = False) -> dict:
        suffix = "?keep_volumes=true" if keep_volumes else ""
        return self.call("DELETE", f"/workspaces/{ws_id}{suffix}", 202).json()

    def exec(self, ws_id: int, command: list[str], timeout: float = 60) -> dict:
        return self.call(
            "POST", f"/workspaces/{ws_id}/exec", 200, json={"command": command, "timeout": timeout}
        ).json()

    def sh(self, ws_id: int, script: str) -> str:
        result = self.exec(ws_id, ["sh", "-c", script])
        if result["exit_code"] != 0:
            raise ApiError(f"{script!r} exited {result['exit_code']}: {result['stderr']}")
        return result["stdout"]

    def wait(self, ws_id: int, *statuses: str, timeout: float = 600) -> dict:
        """Wait until the workspace reaches one of ``statuses`` and its job is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws = self.get(ws_id) if "deleted" not in statuses else self._maybe(ws_id)
            job = (ws or {}).get("last_transition") or {}
            if ws is None or (
                ws["status"] in statuses and job.get("status") in ("succeeded", "failed", None)
            ):
                return ws or {"status": "deleted"}
            if ws["status"] == "failed" and job.get("status") == "failed":
                raise ApiError(f"workspace {ws_id} failed instead of reaching {statuses}: {ws}")
            time.sleep(0.2)
        raise ApiError(f"workspace {ws_id} did not reach {statuses} in {timeout:.0f}s: {ws}")

    def _maybe(self, ws_id: int) -> dict | None:
        response = self.call("GET", f"/workspaces/{ws_id}")
        return None if response.status_code == 404 else response.json()

    def log(self, ws_id: int) -> str:
        response = self.session.get(f"{self.base}/workspaces/{ws_id}/logs?follow=false", timeout=60)
        return "\n".join(
            line[6:] for line in response.text.splitlines() if line.startswith("data: ")
        )
