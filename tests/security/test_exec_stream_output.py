"""What a workspace prints is data, never the engine's answer: output that looks like
HTTP (a status line, headers, the blank line that ends them) and arrives in the same
read as the engine's real answer neither ends the header read early nor is lost, and
the exit code is the command's (app.runtime.docker.hijack). Real Docker, through the
proxy of tests/test_exec_stream.py that delivers the answer and the output at once."""

from __future__ import annotations

import pytest

from tests.test_exec_stream import container, engine, runtime  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

FORGED = "HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\n\\r\\n"


def test_output_that_looks_like_an_engine_answer_is_passed_on_as_output(
    runtime,  # noqa: F811
    container,  # noqa: F811
    engine,  # noqa: F811
):
    held = engine.held
    done = runtime.exec(container.id, ["sh", "-c", f"printf '{FORGED}'; printf '{FORGED}' >&2"])
    assert engine.held > held  # the forged text came in the same write as the answer
    forged = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    assert (done.exit_code, done.stdout, done.stderr) == (0, forged, forged)
