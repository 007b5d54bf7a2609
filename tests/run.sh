#!/usr/bin/env bash
# Runs Berth's whole test suite on a Debian 12 machine, installing first what the tests
# need (Docker engine, mmdebstrap, PostgreSQL, Chromium, a virtualenv with Berth) when it
# is missing. Safe to run again: installed pieces are detected and skipped.
# Arguments are passed to pytest (for example: tests/run.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(docker.io mmdebstrap postgresql chromium iptables iproute2 git ca-certificates tmux openssh-server
  docker-compose)  # the reference CLI runs compose configs with it
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
# npm installs the reference devcontainer CLI (and, where Node is older than 20, a newer
# Node from the npm registry); a Node installed some other way comes with its own npm.
command -v npm >/dev/null || packages+=(npm)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${missing[@]}" >/dev/null
fi

venv=${BERTH_TEST_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.berth-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "tests/run.sh: installing Berth and its test dependencies into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
exec "$venv/bin/pytest" "$@"
