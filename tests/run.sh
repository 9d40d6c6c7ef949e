#!/usr/bin/env bash
# Install everything the test suite needs, then run it: ruff, then pytest on SQLite
# and on a PostgreSQL server the tests start themselves (Redis too, for the shared
# rate limits, nginx for the cluster test, Chromium for the reader's journey, and
# SpamAssassin for the spam score of every mail).
#
# Works on a fresh Debian machine (as root it installs PostgreSQL and Chromium with
# apt-get when they are missing) and on a developer's machine that already has them.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v npm >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v spamassassin >/dev/null || need_apt+=(spamassassin)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing: ${need_apt[*]}. Install them (apt-get install ${need_apt[*]}) and rerun." >&2
    exit 1
  fi
  echo "Installing ${need_apt[*]} from Debian..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# The JavaScript peers: an OpenID Connect provider (oidc-provider) and axe-core, pinned
# by tests/node/package-lock.json.
if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
  npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
fi

echo "ruff check"
.venv/bin/ruff check .
echo "pytest"
# Across every core (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -p no:cacheprovider -n "${PYTEST_WORKERS:-auto}" "$@"
