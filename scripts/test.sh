#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, starts a throwaway PostgreSQL
# on loopback, and runs the whole suite. Extra arguments go to pytest (e.g. -k restart).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v git >/dev/null || missing+=(git)  # the install test clones this checkout
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v bwrap >/dev/null || missing+=(bubblewrap)  # the runs' sandbox
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} from Debian's packages"
  apt_install "${missing[@]}"
fi
ensure_venv_support python3
# The install test makes its virtual environment with the distribution's own python3.
[ ! -x /usr/bin/python3 ] || ensure_venv_support /usr/bin/python3

# Again only when pyproject.toml changed since the last install into this .venv.
STAMP=.venv/installed-from.sha256
if ! sha256sum -c --status "$STAMP" 2>/dev/null; then
  echo "== installing runyard and its test dependencies into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  quiet .venv/bin/python -m pip install -q --upgrade pip
  quiet .venv/bin/python -m pip install -q -e ".[test]"
  .venv/bin/python -c "import runyard, fastapi, sqlalchemy, psycopg, pytest"  # the install really happened
  sha256sum pyproject.toml >"$STAMP"
fi

echo "== starting PostgreSQL on 127.0.0.1"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=$(mktemp -d -t runyard-pg.XXXXXX)
PGPORT=${RUNYARD_TEST_PGPORT:-$(python3 -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")}
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
as_pg "$PGBIN/initdb -D $PGDATA -A trust -U postgres >/dev/null"
as_pg "$PGBIN/pg_ctl -D $PGDATA -o '-k $PGDATA -h 127.0.0.1 -p $PGPORT -c fsync=off' -l $PGDATA/server.log -w start >/dev/null"
trap 'as_pg "$PGBIN/pg_ctl -D $PGDATA -m immediate stop >/dev/null" || true; rm -rf "$PGDATA"' EXIT
export RUNYARD_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PGPORT/postgres"

echo "== lint"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache

echo "== tests"
# Two workers: the tests share no port, home or database. Three were no faster on two cores (21 min against
# 22): most of the suite's time is the CPU of the servers it starts, not waiting. `-n 0` runs serially.
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --durations=15 "$@"
