"""What agents use inside a workspace: exec (collected, or streamed as NDJSON as the
output comes, with stdin and a timeout), files in and out, and "done"."""

from __future__ import annotations

import itertools
import json
import posixpath
import time

from flask import Response, current_app, g, jsonify, request, stream_with_context

from app import authz
from app import runtime as runtimes
from app.api import bp, schemas
from app.api.auth import token_required
from app.api.spec import described, request_body, request_query
from app.api.workspaces import _settings, _user, _workspace
from app.http import auditing
from app.http.errors import ApiError, api_error
from app.models import Recording, stamp, utcnow
from app.runtime import ExecEnd, ProvisionError
from app.slots import long_lived
from app.states import Status
from app.workspaces import activity, recordings, sandboxes, service, strangers

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_COLLECTED_CHARS = 32 * 1024 * 1024  # of an exec's output held in memory at once


@bp.errorhandler(ProvisionError)
def _runtime_refused(exc: ProvisionError):
    """The workspace stopped under a command or a file transfer (or the engine refused):
    a conflict with its state, said in the API's error shape. The engine's own words stay
    in the log: they name its internals (container ids, runtime errors)."""
    current_app.logger.warning("api: the runtime refused %s: %s", request.path, exc)
    return api_error(
        409,
        "runtime_refused",
        "the workspace's container is not running or not there any more; "
        "start the workspace (or see its page) and try again",
    )


def running_container(ws, timeout: float):
    """The runtime and ``ws`` read again once its running container is set up (as the
    worker recorded it: no engine lookup; a new container's environment probed first,
    service.once_set_up), or 409."""
    ws = service.once_set_up(ws, data_dir=_settings().data_dir)
    if ws.status != Status.RUNNING:
        raise ApiError(409, "not_running", f"workspace {ws.name!r} is {ws.status}; start it first")
    if not ws.container_id or not ws.runtime_host:
        raise ApiError(409, "not_running", f"workspace {ws.name!r} has no running container")
    runtime = runtimes.connect(_settings(), timeout=int(timeout) + 30)
    # Closed when the request ends (app.factory), streamed responses included: a few
    # hundred requests at once must not each leave a connection to the engine open.
    g.setdefault("engine_clients", []).append(runtime)
    return runtime, ws


def _exec_events(
    ws, command: list[str], timeout: float, stdin: bytes | None, streamed: bool = False
):
    """Output events as they come, then the end; activity and the audit record whatever
    happens (the client may leave half-way)."""
    runtime, ws = running_container(ws, timeout)
    container_id = ws.container_id
    user, workdir = ws.remote_user or "root", ws.workspace_folder
    # The person's environment (remoteEnv included), as devcontainer exec gives it; the
    # sandbox's token is its owner's: only the owner's own commands get it.
    env = {**ws.person_env}
    if ws.owner_id == _user().id:
        env.update(sandboxes.exec_env(ws, _settings().secret_key))
    detail = " ".join(command)[:200]
    target = f"workspace:{ws.owner.username}.{ws.name}"
    actor_id = _user().id
    activity.record(ws.id, "exec", detail, sessions=1)
    started, end = utcnow(), None
    output = [] if recordings.wanted(ws) else None
    recorded = 0
    clock = time.monotonic()
    try:
        for item in runtime.exec_stream(
            container_id,
            command,
            user=user,
            workdir=workdir,
            timeout=timeout,
            stdin=stdin,
            env=env,
        ):
            if isinstance(item, ExecEnd):
                end = item
                yield {"exit_code": item.exit_code, "timed_out": item.timed_out}
            else:
                text = item[1].decode(errors="replace")
                if output is not None:
                    recorded += len(text)
                    if recorded <= MAX_COLLECTED_CHARS:  # the recording keeps the start
                        output.append([item[0], text, round(time.monotonic() - clock, 3)])
                yield {"stream": item[0], "data": text}
    finally:
        activity.record(ws.id, "exec", detail, sessions=-1)
        recording = None
        if output is not None:
            recording = recordings.save_exec(
                _settings().data_dir,
                ws,
                _user().username,
                command,
                output,
                end.exit_code if end else None,
                started,
            ).id
        auditing.record(
            "exec",
            target,
            "success" if end is not None else "failure",
            command=command,
            started_at=stamp(started),
            ended_at=stamp(utcnow()),
            exit_code=end.exit_code if end else None,
            timed_out=end.timed_out if end else None,
            shared=ws.owner_id != actor_id,
            streamed=streamed,
            recording=recording,
        )


@bp.post("/workspaces/<workspace_id>/exec")
@token_required("workspaces:exec")
@described(body=schemas.Exec, returns=schemas.ExecResult, errors=(409,))
@long_lived
def exec_in_workspace(workspace_id):
    """Run a command in a running workspace (collected, or streamed).

    Streamed: one JSON object per line (application/x-ndjson), {"stream": "stdout" or
    "stderr", "data": …} as output comes, then {"exit_code": n, "timed_out": bool}."""
    ws = _workspace(workspace_id, authz.USE)
    strangers.used_by(ws, _user(), "ran a command through the API")
    body = request_body()
    events = _exec_events(
        ws,
        body.command,
        float(body.timeout),
        body.stdin.encode() if body.stdin is not None else None,
        streamed=body.stream,
    )
    if body.stream:
        first = next(events)  # refusals (not running) come before the 200
        lines = (json.dumps(event) + "\n" for event in itertools.chain([first], events))
        return Response(
            stream_with_context(lines),
            mimetype="application/x-ndjson",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    out, err, end, size = [], [], {}, 0
    for event in events:
        if "stream" in event:
            size += len(event["data"])
            if size <= MAX_COLLECTED_CHARS:
                (out if event["stream"] == "stdout" else err).append(event["data"])
        else:
            end = event
    # Past the bound the command runs on, its output is counted, not kept: use
    # "stream": true to read all of it.
    result = {**end, "stdout": "".join(out), "stderr": "".join(err)}
    if size > MAX_COLLECTED_CHARS:
        result["truncated"] = True
    return jsonify(result)


def _path(ws) -> tuple[str, str]:
    """The absolute path asked for (relative ones are in the workspace folder) and the
    user files are read and written as."""
    raw = request_query().path
    user, folder = ws.remote_user or "root", ws.workspace_folder
    path = posixpath.normpath(raw if raw.startswith("/") else posixpath.join(folder or "/", raw))
    return path, user


@bp.put("/workspaces/<workspace_id>/files")
@token_required("workspaces:exec")
@described(query=schemas.FilePath, status=201, returns=schemas.FileWritten, errors=(409, 413))
@long_lived
def put_file(workspace_id):
    """Write the request body to ?path= as the workspace user (parents made).

    What the user may not write (the read-only root of a sandbox) is refused with the
    reason."""
    ws = _workspace(workspace_id, authz.USE)
    strangers.used_by(ws, _user(), "wrote a file through the API")
    data = request.get_data(cache=False)
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(413, "too_large", f"files are limited to {MAX_FILE_BYTES} bytes")
    runtime, ws = running_container(ws, 120)
    container_id = ws.container_id
    path, user = _path(ws)
    script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
    result = runtime.exec(
        container_id, ["sh", "-c", script, "sh", path], user=user, stdin=data, timeout=120
    )
    if result.exit_code != 0:
        raise ApiError(422, "write_failed", f"cannot write {path}: {result.stderr.strip()}")
    auditing.record(
        "file.write", f"workspace:{ws.owner.username}.{ws.name}", path=path, bytes=len(data)
    )
    return jsonify({"path": path, "bytes": len(data)}), 201


@bp.get("/workspaces/<workspace_id>/files")
@token_required("workspaces:exec")
@described(query=schemas.FilePath, returns="application/octet-stream", errors=(409,))
@long_lived
def get_file(workspace_id):
    """The file at ?path=, or a tar of the directory there, as the workspace user sees it.

    Relative paths are in the workspace folder; a directory comes as application/x-tar."""
    ws = _workspace(workspace_id, authz.USE)
    runtime, ws = running_container(ws, 120)
    container_id = ws.container_id
    path, user = _path(ws)
    kind = runtime.exec(
        container_id,
        [
            "sh",
            "-c",
            'if [ -d "$1" ]; then echo dir; elif [ -r "$1" ]; then echo file; fi',
            "sh",
            path,
        ],
        user=user,
        timeout=30,
    ).stdout.strip()
    if not kind:
        raise ApiError(404, "not_found", f"{path} does not exist or is not readable")
    argv = ["tar", "-C", path, "-cf", "-", "."] if kind == "dir" else ["cat", "--", path]

    def body():
        for item in runtime.exec_stream(container_id, argv, user=user, timeout=600):
            if not isinstance(item, ExecEnd) and item[0] == "stdout":
                yield item[1]

    name = posixpath.basename(path) or "root"
    return Response(
        stream_with_context(body()),
        mimetype="application/x-tar" if kind == "dir" else "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}{".tar" if kind == "dir" else ""}"'
        },
    )


@bp.post("/workspaces/<workspace_id>/done")
@token_required("workspaces:write")
@described(
    body=schemas.Done, body_optional=True, status=202, returns=schemas.DoneAccepted, errors=(409,)
)
def report_done(workspace_id):
    """An agent's sandbox is finished: recorded, then the sandbox is deleted."""
    ws = _workspace(workspace_id, authz.MANAGE)
    if not (ws.template and ws.template.profile == "agent"):
        raise ApiError(409, "not_a_sandbox", "only agent sandboxes report done; delete it instead")
    body = request_body()
    outcome, summary = body.outcome, body.summary
    auditing.record(
        "sandbox.done",
        f"workspace:{ws.owner.username}.{ws.name}",
        "success" if outcome == "success" else "failure",
        summary=(summary or "")[:2000],
    )
    job = service.request(
        ws,
        "delete",
        cause="api",
        actor=_user().username,
        reason=f"the agent reported it done ({outcome})",
        data_dir=_settings().data_dir,
        source_ip=request.remote_addr,
    )
    return jsonify({"workspace": ws.id, "outcome": outcome, "transition": job.id}), 202


@bp.get("/workspaces/<workspace_id>/recordings")
@token_required("workspaces:read")
@described(returns=[dict])
def list_recordings(workspace_id):
    """Recorded SSH sessions and execs, newest first (also of deleted workspaces).

    What people typed is the owner's: those it is shared with do not read it."""
    ws = _recorded_workspace(workspace_id)
    rows = ws.recordings.order_by(Recording.id.desc())
    return jsonify([recordings.to_dict(r) for r in rows])


@bp.get("/workspaces/<workspace_id>/recordings/<int:recording_id>")
@token_required("workspaces:read")
@described(returns="application/x-asciicast", errors=(410,))
def get_recording(workspace_id, recording_id):
    """A recording: asciicast v2 (SSH) or JSON (exec: command, output, exit code)."""
    ws = _recorded_workspace(workspace_id)
    return recording_file(ws, recording_id)


def _recorded_workspace(workspace_id):
    ws = _workspace(workspace_id, include_deleted=True)
    if not recordings.may_read(_user(), ws):
        raise ApiError(
            403, "forbidden", "recordings are read by the owner, admins and auditors only"
        )
    return ws


def recording_file(ws, recording_id: int) -> Response:
    row = Recording.get_or_none((Recording.id == recording_id) & (Recording.workspace == ws))
    if row is None:
        raise ApiError(404, "not_found", f"workspace {ws.id} has no recording {recording_id}")
    found = recordings.content(row)
    if found is None:
        raise ApiError(410, "gone", recordings.GONE)
    return Response(found[0], mimetype=found[1])
