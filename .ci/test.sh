#!/usr/bin/env bash
# The test command (README command 2, via `make test`): services up, lint, then the whole suite on
# SQLite and PostgreSQL. Fails when no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

# PostgreSQL: the suite runs against a real server.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "Starting PostgreSQL..."
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }

# Chromium for the real-browser test (Debian's package; never `playwright install`).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  echo "Installing Debian's chromium for the browser test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/lpstudy-apt.log 2>&1 \
    || echo "chromium could not be installed (see /tmp/lpstudy-apt.log)"
fi

# docker-compose (Debian's package) validates docker-compose.yml in tests/test_deploy.py; there is no engine.
if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "Installing Debian's docker-compose to validate docker-compose.yml..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/tmp/lpstudy-apt-compose.log 2>&1 \
    || echo "docker-compose could not be installed (see /tmp/lpstudy-apt-compose.log)"
fi

export LPSTUDY_DATA_DIR=${LPSTUDY_DATA_DIR:-$(pwd)/../shared/data}
echo "LPSTUDY_DATA_DIR=$LPSTUDY_DATA_DIR"

"$BIN/ruff" check app workers tests bench migrations || exit 1
"$BIN/mypy" app || exit 1

"$BIN/python" -m pytest -q -ra "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
exit "$rc"
