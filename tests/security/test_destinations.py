"""Findings 5, 6 and 8: Berth connects on someone's behalf (the egress proxy, OCI Feature
fetches, git clones) only to destinations checked after resolution, in every spelling of
an address; OCI answers are bounded and verified; repository URLs are https only and
never turn Berth into a port scanner. The egress proxy on a real sandbox is in
tests/security/test_host_boundary.py."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import socket
import tarfile

import pytest
import requests
from requests.adapters import BaseAdapter

from app import destinations
from app.devcontainer import oci
from app.devcontainer.errors import FeatureError
from app.workspaces import git, service

LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1",
    "017700000001", "127.255.255.254", "localhost", "LOCALHOST", "::1", "[::1]",
    "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:1", "2002:7f00:1::1",
    "64:ff9b::7f00:1", "localhost.",
]  # fmt: skip
OTHER_REFUSED = [
    "0.0.0.0",  # noqa: S104  (an address to refuse, not to bind)
    "0", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254",
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "198.18.0.1", "240.0.0.1", "fe80::1",
    "fc00::1", "fd12:3456::1", "ff02::1", "::", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
]  # fmt: skip


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + OTHER_REFUSED)
def test_every_spelling_of_a_non_public_address_is_refused(host):
    try:
        found = destinations.resolve(host, 80)
    except destinations.Unresolved:
        return  # a spelling the resolver does not take reaches nothing either
    except destinations.DestinationRefused as exc:
        assert "Berth does not connect there" in str(exc)
        return
    raise AssertionError(f"{host} resolved to {found} and was allowed")


def test_public_addresses_pass_and_an_admins_network_opens_a_private_one():
    assert destinations.resolve("93.184.215.14", 443) == ["93.184.215.14"]
    assert destinations.resolve("2606:4700::1111", 443) == ["2606:4700::1111"]
    allowed = destinations.parse_networks(["10.1.0.0/16"])
    assert destinations.resolve("10.1.2.3", 5432, allowed) == ["10.1.2.3"]
    with pytest.raises(destinations.DestinationRefused):
        destinations.resolve("10.2.0.1", 5432, allowed)
    with pytest.raises(destinations.DestinationRefused):  # loopback is not in that network
        destinations.resolve("127.0.0.1", 5432, allowed)


def test_a_name_that_resolves_to_both_public_and_private_is_refused(monkeypatch):
    def rebinding(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(destinations.DestinationRefused, match="127.0.0.1 is a loopback"):
        destinations.resolve("rebind.example", 80)


def test_the_checked_session_connects_to_what_it_checked(monkeypatch):
    """DNS rebinding: a name checked as public must not be resolved again to loopback."""
    answers = iter(["93.184.215.14", "127.0.0.1"])
    seen = []

    def flip(host, port, *args, **kwargs):
        address = next(answers, "127.0.0.1")
        seen.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    def connect(address, timeout=None, **kwargs):
        seen.append(("connect", address[0]))
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", flip)
    monkeypatch.setattr(socket, "create_connection", connect)
    with pytest.raises(requests.RequestException):
        destinations.checked_session().get("https://flip.example/", timeout=2)
    assert seen[:2] == ["93.184.215.14", ("connect", "93.184.215.14")]
    with pytest.raises(destinations.DestinationRefused, match="https only"):
        destinations.checked_session().get("http://flip.example/")


# --- OCI Features: a registry that lies ---------------------------------------------------


class _Registry(BaseAdapter):
    """Canned answers for https://registry.example, the registry under test."""

    def __init__(self, answers):
        super().__init__()
        self.answers = answers
        self.asked = []

    def send(self, request, **kwargs):
        self.asked.append(request.url)
        status, headers, body = self.answers(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


def _feature_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (
            ("devcontainer-feature.json", json.dumps({"id": "tool", "version": "1.0.0"})),
            ("install.sh", "#!/bin/sh\necho ok\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _fetch_with(monkeypatch, tmp_path, answers, ref="registry.example/owner/features/tool:1"):
    registry = _Registry(answers)
    real = destinations.checked_session

    def session(allowed=()):
        made = real(allowed)
        made.mount("https://registry.example/", registry)
        return made

    monkeypatch.setattr(destinations, "checked_session", session)
    return registry, lambda: oci.fetch(ref, tmp_path / "cache")


def _manifest(digest: str) -> bytes:
    return json.dumps({"layers": [{"digest": digest}]}).encode()


def test_a_layer_digest_is_never_a_path_and_must_match_the_blob(monkeypatch, tmp_path):
    blob = _feature_tar()
    good = "sha256:" + hashlib.sha256(blob).hexdigest()
    for bad in ("sha256:../../../../tmp/planted", "../../x", "sha256:" + "A" * 64, "md5:00"):
        _, fetch = _fetch_with(monkeypatch, tmp_path, lambda r, d=bad: (200, {}, _manifest(d)))
        with pytest.raises(FeatureError, match="is not sha256"):
            fetch()
    assert not list(tmp_path.rglob("planted"))

    def mismatched(request):
        if "/manifests/" in request.url:
            return 200, {}, _manifest("sha256:" + "0" * 64)
        return 200, {}, blob

    _, fetch = _fetch_with(monkeypatch, tmp_path, mismatched)
    with pytest.raises(FeatureError, match="does not match its digest"):
        fetch()

    def honest(request):
        return (200, {}, _manifest(good)) if "/manifests/" in request.url else (200, {}, blob)

    _, fetch = _fetch_with(monkeypatch, tmp_path, honest)
    folder, _ = fetch()
    assert (folder / "install.sh").read_text().startswith("#!/bin/sh")


def test_the_token_realm_and_redirects_go_only_to_public_https(monkeypatch, tmp_path):
    for realm in (
        "https://127.0.0.1:9/token",
        "https://[::1]/token",
        "https://169.254.169.254/latest/meta-data",
        "http://auth.example/token",
        "file:///etc/passwd",
    ):

        def challenge(request, realm=realm):
            return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'}, b""

        registry, fetch = _fetch_with(monkeypatch, tmp_path, challenge)
        with pytest.raises((FeatureError, requests.RequestException)):
            fetch()
        assert all(url.startswith("https://registry.example/") for url in registry.asked)

    def redirect(request):
        return 307, {"Location": "https://10.0.0.5/blob"}, b""

    _, fetch = _fetch_with(monkeypatch, tmp_path, redirect)
    with pytest.raises(FeatureError, match="10.0.0.5 is a private address"):
        fetch()


def test_answers_are_read_up_to_a_bound(monkeypatch, tmp_path):
    huge = b"{" + b" " * (oci.MAX_MANIFEST_BYTES + 10)
    _, fetch = _fetch_with(monkeypatch, tmp_path, lambda r: (200, {}, huge))
    with pytest.raises(FeatureError, match="more than"):
        fetch()


@pytest.mark.parametrize(
    "ref",
    [
        "registry.example/../../etc/x:1",
        "registry.example/owner/../../../tmp/x:1",
        "registry.example/owner/./x:1",
        "../registry/owner/x:1",
        "registry.example/owner/x:1/../../y",
    ],
)
def test_references_outside_the_distribution_grammar_are_refused(ref):
    with pytest.raises(FeatureError, match="is not a Feature reference"):
        oci.parse_ref(ref)


# --- repository URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://example.com/repo.git", "must be https://"),
        ("git://example.com/repo.git", "must be https://"),
        ("ext::sh -c touch% /tmp/pwned", "spaces or control characters"),
        ("ext::sh%20-c%20touch", "must be https://"),
        ("ssh://git@127.0.0.1/repo.git", "loopback"),
        ("git@localhost:org/repo.git", "loopback"),
        ("git@[::ffff:10.0.0.1]:org/repo.git", "private"),
        ("ssh://git:secret@example.com/repo.git", "may not carry credentials"),
        ("git@-oProxyCommand=touch:repo", "must be https://"),
        ("ssh://-oProxyCommand=touch/repo", "no usable host"),
        ("https://git\thub.com/o/r.git", "control characters"),
        ("https://github.com /o/r.git", "spaces"),
        ("git@[1.2.3.4:2222]:org/repo", "no IPv6 address"),
        ("git@[abcd:2222]:org/repo", "no IPv6 address"),
        ("https://user:secret@example.com/repo.git", "may not carry credentials"),
        ("https://127.0.0.1:2222/repo.git", "loopback"),
        ("https://localhost/repo.git", "loopback"),
        ("https://2130706433/repo.git", "loopback"),
        ("https://[::1]:5432/repo.git", "loopback"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://10.0.0.1/repo.git", "private"),
    ],
)
def test_repository_urls_are_https_or_ssh_to_public_hosts_only(url, words):
    with pytest.raises(service.WorkspaceError) as error:
        service.validate_repo({"url": url}, [])
    assert error.value.status == 422 and words in error.value.message, error.value.message


def test_an_unreachable_repository_says_the_same_whatever_the_reason(tmp_path, monkeypatch):
    """Refused, timed out, reset, no TLS: one sentence, so the answer does not map ports."""
    monkeypatch.setattr(destinations, "resolve", lambda host, port, allowed=(): ["192.0.2.1"])
    reasons = []
    for stderr in (
        "fatal: unable to access 'x': Failed to connect to h port 22: Connection refused",
        "fatal: unable to access 'x': Connection timed out after 300 milliseconds",
        "fatal: unable to access 'x': OpenSSL SSL_connect: Connection reset by peer",
        "fatal: unable to access 'x': gnutls_handshake() failed",
    ):

        def run(*args, stderr=stderr, **kwargs):
            import subprocess

            return subprocess.CompletedProcess(args, 128, "", stderr)

        monkeypatch.setattr(git.subprocess, "run", run)
        with pytest.raises(git.CloneError) as error:
            git.clone("https://host.example/repo.git", None, tmp_path / "clone")
        reasons.append(str(error.value))
    assert len(set(reasons)) == 1 and "could not be reached over https" in reasons[0]
    assert ipaddress.ip_address("192.0.2.1")  # documentation range: never contacted here


# --- the egress proxy's alias for Berth itself -------------------------------------------


def test_the_alias_for_berth_reaches_berth_only_on_berths_port():
    """berth.internal is Berth's own address for sandboxes, on Berth's port only: the same
    name on another port (a database on the host's loopback) is checked like any name."""
    import asyncio

    from app.egress import gateway

    async def scenario():
        async def answer(reader, writer):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nberth")
            await writer.drain()
            writer.close()

        berth = await asyncio.start_server(answer, "127.0.0.1", 0)
        other = await asyncio.start_server(answer, "127.0.0.1", 0)
        berth_port = berth.sockets[0].getsockname()[1]
        other_port = other.sockets[0].getsockname()[1]
        source = gateway.Source(1, "ann.sandbox", [gateway.Rule(gateway.BERTH_ALIAS, None)])
        source.rules.append(gateway.Rule(gateway.BERTH_ALIAS, other_port))
        source.rules.append(gateway.Rule(gateway.BERTH_ALIAS, berth_port))
        proxy = gateway.Proxy(
            lambda peer: source,
            lambda *args: None,
            {(gateway.BERTH_ALIAS, berth_port): "127.0.0.1"},
        )
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def connect(target_port: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"CONNECT {gateway.BERTH_ALIAS}:{target_port} HTTP/1.1\r\n\r\n".encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), 10)
            writer.close()
            return answer

        try:
            return await connect(berth_port), await connect(other_port)
        finally:
            for each in (server, berth, other):
                each.close()

    to_berth, to_other = asyncio.run(scenario())
    assert to_berth.startswith(b"HTTP/1.1 200 Connection established")
    assert to_other.startswith(b"HTTP/1.1 403") and b"refused" in to_other


# --- what a Dockerfile makes the engine fetch ----------------------------------------------


@pytest.mark.parametrize(
    "dockerfile, words",
    [
        ("FROM localhost:5000/image\n", "localhost"),
        ("FROM 127.0.0.1:5000/image\n", "127.0.0.1"),
        ("ARG REGISTRY=10.0.0.9:5000\nFROM ${REGISTRY}/image\n", "10.0.0.9"),
        ("FROM debian AS base\nCOPY --from=127.0.0.1:5000/tools /x /y\n", "127.0.0.1"),
        ("FROM debian\nADD http://169.254.169.254/latest/meta-data/ /x\n", "169.254.169.254"),
        ("FROM debian\nADD --chown=1:1 https://127.0.0.1:8000/x /y\n", "127.0.0.1"),
        ('FROM debian\nADD ["http://[::1]:2375/containers/json", "/x"]\n', "::1"),
        ("FROM debian\nARG HOST\nADD http://${HOST}/x /y\n", "built from variables"),
    ],
)
def test_a_dockerfile_cannot_point_the_engine_at_this_machine(tmp_path, dockerfile, words):
    from app import devcontainer as dc
    from tests.dcfiles import write

    (tmp_path / ".devcontainer").mkdir()
    (tmp_path / ".devcontainer" / "Dockerfile").write_text(dockerfile)
    write(tmp_path, json.dumps({"build": {"dockerfile": "Dockerfile"}}))
    with pytest.raises(dc.PolicyError) as error:
        dc.plan(dc.load(tmp_path), feature_cache=tmp_path / "cache")
    assert words in str(error.value), str(error.value)


def test_public_and_local_images_still_build_from_where_they_are(tmp_path):
    from app import devcontainer as dc
    from tests.dcfiles import write

    (tmp_path / ".devcontainer").mkdir()
    (tmp_path / ".devcontainer" / "Dockerfile").write_text(
        "FROM berth-base:bookworm AS base\nFROM base\nCOPY --from=base /etc/hostname /x\n"
        "ADD local.txt /y\n"
    )
    write(tmp_path, json.dumps({"build": {"dockerfile": "Dockerfile"}}))
    dc.plan(dc.load(tmp_path), feature_cache=tmp_path / "cache")
    write(tmp_path, json.dumps({"image": "localhost:5000/team/image"}))
    with pytest.raises(dc.PolicyError, match="image"):
        dc.plan(dc.load(tmp_path), feature_cache=tmp_path / "cache")
    allowed = destinations.parse_networks(["127.0.0.0/8"])
    dc.plan(dc.load(tmp_path), feature_cache=tmp_path / "cache", private=allowed)


def test_an_environment_line_never_becomes_an_instruction(tmp_path):
    from app import devcontainer as dc
    from app.devcontainer.build import _env, _env_instruction
    from app.devcontainer.errors import BuildError
    from tests.dcfiles import write

    write(
        tmp_path,
        json.dumps(
            {"image": "berth-base:bookworm", "containerEnv": {"A=1\nADD http://x/y /z\n#": "v"}}
        ),
    )
    with pytest.raises(dc.ConfigError, match="containerEnv"):
        dc.load(tmp_path)
    with pytest.raises(BuildError, match="not an environment variable name"):
        _env("A\nRUN id", "1", False, "a Feature's containerEnv")
    # A value with a line break is no Dockerfile line: the container gets it at create.
    assert _env_instruction("A", "1\nADD http://x/y /z", False, "containerEnv") == []
    assert _env_instruction("P", 'a "b" $c', True, "x") == ['ENV P="a \\"b\\" \\$c"']
