"""The egress gateway's rules and wire formats, without Docker."""

import asyncio
import struct

import pytest

from app.egress import gateway
from tests.services import in_thread


def test_allowlist_rules():
    rules = gateway.parse_allowlist(["pypi.org", "*.pythonhosted.org", "git.corp.test:2222"])
    allow = lambda host, port: gateway.allowed(rules, host, port)  # noqa: E731
    assert allow("pypi.org", 443) and allow("PyPI.org.", 80)
    assert not allow("pypi.org", 22)  # no port given: 80 and 443 only
    assert allow("files.pythonhosted.org", 443) and allow("a.b.pythonhosted.org", 443)
    assert not allow("pythonhosted.org", 443)  # a wildcard is for subdomains
    assert not allow("evilpythonhosted.org", 443)
    assert allow("git.corp.test", 2222) and not allow("git.corp.test", 443)
    assert not allow("pypi.org.evil.test", 443)
    for bad, message in (
        ("bad host", "is not a host name"),
        ("*", "is not a host name"),
        ("a.*.b", "is not a host name"),
        ("pypi.org:0", "the port must be"),
        ("pypi.org:http", "the port must be"),
    ):
        with pytest.raises(gateway.AllowlistError, match=message):
            gateway.parse_rule(bad)
    with pytest.raises(gateway.AllowlistError, match="must be a list"):
        gateway.parse_allowlist("pypi.org")


def test_proxy_targets():
    assert gateway._target("CONNECT", "pypi.org:443") == ("pypi.org", 443, "")
    assert gateway._target("GET", "http://h.test/a?b=1") == ("h.test", 80, "/a?b=1")
    assert gateway._target("GET", "http://h.test:8080") == ("h.test", 8080, "/")
    with pytest.raises(ValueError, match="only http:// URLs and CONNECT"):
        gateway._target("GET", "/relative")


def test_dead_dns_refuses_at_once_and_records_the_name():
    records = []
    dns = gateway.DeadDns(lambda ip: None, lambda source, action, detail: records.append(detail))
    sent = []

    class Transport:
        def sendto(self, data, addr):
            sent.append(data)

    dns.connection_made(Transport())
    question = b"\x04leak\x07example\x00\x00\x01\x00\x01"
    query = struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + question
    dns.datagram_received(query, ("10.231.0.9", 5353))
    dns.datagram_received(query, ("10.231.0.9", 5353))  # a retry: one record
    reply = sent[0]
    ident, flags, qd, an = struct.unpack(">HHHH", reply[:8])
    assert ident == 0xBEEF and flags & 0x8000 and flags & 0xF == 5 and qd == 1 and an == 0
    assert reply.endswith(question)
    assert records == [{"name": "leak.example", "source_ip": "10.231.0.9"}]


def test_the_proxy_refuses_an_unknown_source():
    records = []

    async def scenario():
        proxy = gateway.Proxy(lambda ip: None, lambda s, a, d: records.append((a, d)))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
        answer = await reader.read()
        server.close()
        return answer

    answer = in_thread(lambda: asyncio.run(scenario()))
    assert answer.startswith(b"HTTP/1.1 403") and b"not a Berth sandbox" in answer
    assert records[0][0] == "egress.deny" and records[0][1]["host"] == "pypi.org"
