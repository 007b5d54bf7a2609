"""Real authenticated git servers for the tests, on an address workspaces can reach but
nothing else uses: a network namespace of this machine joined by a veth pair, holding
`git http-backend` behind Caddy (https, basic auth, Caddy's internal CA) and OpenSSH
with git-shell. The host reaches it through the veth; a workspace through its bridge,
forwarded like any outside address. Everything it makes is named with one random tag
and removed at the end."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.services import wait_until

CGI_RUNNER = textwrap.dedent(
    '''
    """git http-backend as CGI behind a plain HTTP server on the namespace's loopback."""
    import http.server, os, subprocess, sys

    ROOT = sys.argv[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _run(self):
            path, _, query = self.path.partition("?")
            body = self._body()
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": ROOT,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": self.headers.get("X-Remote-User", ""),
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            done = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=env
            )
            head, _, payload = done.stdout.partition(b"\\r\\n\\r\\n")
            status, headers = 200, []
            for line in head.decode().split("\\r\\n"):
                key, _, value = line.partition(": ")
                if key.lower() == "status":
                    status = int(value.split()[0])
                elif key:
                    headers.append((key, value))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _run

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", 9418), Handler).serve_forever()
    '''
)


@dataclass
class GitServers:
    address: str  # of the git host, in the namespace
    network: str  # the /30 it is on (for BERTH_PRIVATE_DESTINATIONS)
    root: Path
    repos: Path  # bare repositories, served at https://<address>/<name> and ssh
    ca_file: Path  # Caddy's root certificate, which https clients must trust
    user: str
    token: str
    authorized_keys: Path

    def https_url(self, name: str) -> str:
        return f"https://{self.address}/{name}"

    def ssh_url(self, name: str) -> str:
        return f"ssh://root@{self.address}{self.repos / name}"

    def make_repo(self, name: str, files: dict[str, str]) -> Path:
        """A bare repository ``name`` on both servers, with one commit of ``files``."""
        work = self.root / f"work-{name}"
        work.mkdir()
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
        subprocess.run([*git, "init", "-q", "-b", "main", str(work)], check=True)
        subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "first"], check=True)
        bare = self.repos / name
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
        # Pushes over https come as REMOTE_USER; let them in.
        subprocess.run(["git", "-C", str(bare), "config", "http.receivepack", "true"], check=True)
        return bare

    def log(self, bare: Path) -> list[str]:
        done = subprocess.run(
            ["git", "-C", str(bare), "log", "--format=%s", "main"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split("\n")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def running(root: Path):
    """Start the servers; yield a GitServers; stop and remove everything."""
    tag = secrets.token_hex(3)
    namespace, host_end, ns_end = f"berthgit{tag}", f"bg{tag}a", f"bg{tag}b"
    third = int(tag[:2], 16)
    fourth = int(tag[2:4], 16) & 0xFC
    # 198.18.0.0/15 is for tests like this one (RFC 2544): no real host answers there.
    network = f"198.18.{third}.{fourth}/30"
    host_address, address = f"198.18.{third}.{fourth + 1}", f"198.18.{third}.{fourth + 2}"
    repos = root / "repos"
    repos.mkdir(parents=True)
    processes: list[subprocess.Popen] = []
    try:
        _ip("netns", "add", namespace)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        inside = ["ip", "netns", "exec", namespace]
        for command in (
            ["ip", "addr", "add", f"{address}/30", "dev", ns_end],
            ["ip", "link", "set", ns_end, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", host_address],
        ):
            subprocess.run([*inside, *command], check=True, capture_output=True)

        user, token = "ann", "tok-" + secrets.token_hex(16)
        caddy = shutil.which("caddy", path=os.path.dirname(sys.executable)) or "caddy"
        hashed = subprocess.run(
            [caddy, "hash-password", "--plaintext", token],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        (root / "cgi.py").write_text(CGI_RUNNER)
        (root / "Caddyfile").write_text(
            textwrap.dedent(
                f"""
                {{
                    admin off
                    storage file_system {root}/caddy
                    skip_install_trust
                    default_sni {address}
                    auto_https disable_redirects
                    log {{
                        output file {root}/caddy.log
                    }}
                }}
                https://{address}:443 {{
                    tls internal
                    basic_auth {{
                        {user} {hashed}
                    }}
                    reverse_proxy 127.0.0.1:9418 {{
                        header_up X-Remote-User {{http.auth.user.id}}
                    }}
                }}
                """
            )
        )
        log = (root / "servers.log").open("ab")
        processes.append(
            subprocess.Popen(
                [*inside, sys.executable, str(root / "cgi.py"), str(repos)],
                stdout=log,
                stderr=log,
            )
        )
        processes.append(
            subprocess.Popen(
                [*inside, caddy, "run", "--config", str(root / "Caddyfile")],
                stdout=log,
                stderr=log,
                env={**os.environ, "HOME": str(root)},
            )
        )
        ca_file = root / "caddy" / "pki" / "authorities" / "local" / "root.crt"

        # OpenSSH with git-shell: key sign-in only, and only git's own commands.
        host_key = root / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        authorized = root / "authorized_keys"
        authorized.write_text("")
        authorized.chmod(0o600)
        (root / "sshd_config").write_text(
            textwrap.dedent(
                f"""
                ListenAddress {address}:22
                HostKey {host_key}
                PidFile {root}/sshd.pid
                AuthorizedKeysFile {authorized}
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                StrictModes no
                UsePAM no
                ForceCommand git-shell -c "$SSH_ORIGINAL_COMMAND"
                """
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        processes.append(
            subprocess.Popen(
                [*inside, "/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")],
                stdout=log,
                stderr=log,
            )
        )
        servers = GitServers(address, network, root, repos, ca_file, user, token, authorized)

        def up() -> bool:
            if not ca_file.exists():
                return False
            probe = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca_file),
                 "-u", f"{user}:{token}", f"https://{address}/"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            ssh = subprocess.run(
                ["ssh-keyscan", "-T", "3", address], capture_output=True, text=True, timeout=10
            )
            return probe.stdout.strip() not in ("", "000") and "ssh-ed25519" in ssh.stdout

        wait_until(up, timeout=60, interval=0.3, what="the git servers")
        yield servers
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
