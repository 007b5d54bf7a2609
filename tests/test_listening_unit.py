"""Port detection's reading of /proc/net/tcp{,6} (app.workspaces.listening): what the
kernel writes, and what a hostile workspace could write instead, since the reader runs
inside it."""

from app.models import Workspace
from app.runtime import ExecOutput, ProvisionError
from app.workspaces import listening

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
TCP = "\n".join(
    [
        HEAD,
        "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000",
        "   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000",
        "   2: 0100007F:1F40 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000",
        "   3: 0100007F:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000",
        # Docker's DNS (127.0.0.11) and a server bound to one interface: not reachable
        # through Berth, so not offered.
        "   4: 0B00007F:A0E7 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0",
        "   5: 0200110A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000",
    ]
)
TCP6 = "\n".join(
    [
        HEAD,
        "   0: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 0",
        "   1: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0",
    ]
)


def test_listening_sockets_are_found_with_where_they_listen():
    found = listening.parse(TCP + "\n" + TCP6)
    assert found == [
        listening.Listening(3000, False),  # 0.0.0.0 and ::
        listening.Listening(8000, True),  # 127.0.0.1 only (the connected socket is not one)
        listening.Listening(9090, True),  # ::1
    ]


def test_what_a_workspace_could_answer_instead_gives_only_port_numbers():
    hostile = "\n".join(
        [
            "0: <script>:1F40 x 0A",
            "0: 0100007F:GGGG x 0A",
            "0: 0100007F:1F4000 x 0A",
            "0: 0100007F:+1F4 x 0A",
            "0: 0100007F:1F41",
            "\x00\xff garbage",
            *[f"{n}: 00000000:{n:04X} 0 0A" for n in range(1, 500)],
        ]
    )
    found = listening.parse(hostile)
    assert len(found) == listening.MAX_PORTS and found[0].port == 1
    assert all(isinstance(f.port, int) and 1 <= f.port <= 65535 for f in found)


class _Runtime:
    def __init__(self, answer=None, fail=False):
        self.calls, self.answer, self.fail = 0, answer, fail

    def exec(self, container_id, argv, **options):
        self.calls += 1
        assert argv == ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
        assert options["user"] == "dev" and options["max_output"] == listening.MAX_OUTPUT
        if self.fail:
            raise ProvisionError("the container is gone")
        return ExecOutput(0, self.answer, "")

    def close(self):
        pass


def test_a_page_polled_often_reads_at_most_every_few_seconds():
    listening._cache.clear()
    ws = Workspace(id=7, status="running", container_id="c7", remote_user="dev")
    runtime, now = _Runtime(TCP), [100.0]
    read = lambda: listening.listening(None, ws, clock=lambda: now[0], connect=lambda: runtime)  # noqa: E731
    assert [f.port for f in read()] == [3000, 8000]
    now[0] += listening.CACHE_SECONDS - 1
    read()
    assert runtime.calls == 1
    now[0] += 2
    read()
    assert runtime.calls == 2
    # Not running, or the engine refusing: not known (None), no error.
    stopped = Workspace(id=8, status="stopped")
    assert listening.listening(None, stopped, connect=lambda: runtime) is None
    gone = Workspace(id=9, status="running", container_id="c9", remote_user="dev")
    assert listening.listening(None, gone, connect=lambda: _Runtime(fail=True)) is None
