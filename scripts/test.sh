#!/usr/bin/env bash
# Runs every Leoflow test on this machine: formatting, lints, and the test suites. Storage
# tests start their own private Postgres cluster (the managed-Postgres code path), so the
# only thing needed from the system is a PostgreSQL server build, installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Golden tests rewrite their expectations when LEOFLOW_UPDATE_GOLDEN is set: in CI that would
# make them pass whatever the compiler produced.
if [ -n "${LEOFLOW_UPDATE_GOLDEN:-}" ] && [ -n "${CI:-}" ]; then
    echo "LEOFLOW_UPDATE_GOLDEN is set: CI never rewrites golden files (unset it)" >&2
    exit 1
fi

# The storage tests share one managed cluster (postgres/src/testing.rs); it is stopped when
# this script ends, however it ends.
test_pg_data="${LEOFLOW_TEST_PG_ROOT:-${TMPDIR:-/tmp}/leoflow-test-pg-$(id -u)}/data"
stop_test_postgres() {
    [ -f "$test_pg_data/postmaster.pid" ] || return 0
    local pg_ctl
    pg_ctl="${LEOFLOW_PG_BIN:+$LEOFLOW_PG_BIN/pg_ctl}"
    [ -n "$pg_ctl" ] || pg_ctl=$(compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | sort -V | tail -n 1)
    echo "== stopping the tests' Postgres"
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$(stat -c %U "$test_pg_data")" -- "$pg_ctl" stop -D "$test_pg_data" -m fast -s || true
    else
        "$pg_ctl" stop -D "$test_pg_data" -m fast -s || true
    fi
}
trap stop_test_postgres EXIT

have_pg_build() {
    [ -n "${LEOFLOW_PG_BIN:-}" ] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
if ! have_pg_build; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "== installing a PostgreSQL server build (apt-get install postgresql)"
        apt-get update -qq
        apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "A PostgreSQL server build is needed: sudo apt-get install postgresql" >&2
        echo "(or set LEOFLOW_PG_BIN to a directory holding initdb, pg_ctl and postgres)" >&2
        exit 1
    fi
fi

# The Python side: a venv in the ignored .venv folder with what the SDK's tests and the DAG
# files of the test corpus import. Recreated when the requirements change.
python=${LEOFLOW_TEST_PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "Python 3.10 or newer is needed (set LEOFLOW_TEST_PYTHON to one)" >&2
    exit 1
fi
stamp=.venv/.requirements
requirements=$(cat sdk/python/requirements-dev.txt api/tests/requirements.txt charts/tests/requirements.txt)
if [ "$requirements" != "$(cat "$stamp" 2>/dev/null)" ]; then
    echo "== creating .venv"
    rm -rf .venv
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -r sdk/python/requirements-dev.txt -r api/tests/requirements.txt -r charts/tests/requirements.txt
    printf '%s' "$requirements" > "$stamp"
fi
export LEOFLOW_PYTHON="$PWD/.venv/bin/python"

# The browser tests drive the real Airflow UI in headless Debian Chromium with playwright-core
# (never a browser a test tool downloads).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "== installing Debian's chromium"
        [ -n "${apt_updated:-}" ] || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        apt_updated=1
    else
        echo "Debian's chromium is needed for the UI tests: sudo apt-get install chromium" >&2
        exit 1
    fi
fi
# The replicated-server tests start a real Redis (Debian's redis-server), as Pro runs on one.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "== installing Debian's redis-server"
        [ -n "${apt_updated:-}" ] || apt-get update -qq
        apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "Debian's redis-server is needed for the server tests: sudo apt-get install redis-server" >&2
        exit 1
    fi
fi
if ! cmp -s ui-tests/package-lock.json ui-tests/node_modules/.installed-lock 2>/dev/null; then
    echo "== installing ui-tests' npm packages"
    (cd ui-tests && npm ci --silent --no-audit --no-fund && cp package-lock.json node_modules/.installed-lock)
fi

echo "== mypy --strict (sdk/python)"
(cd sdk/python && "$LEOFLOW_PYTHON" -m mypy --strict --ignore-missing-imports src/leoflow --exclude _shim)
echo "== pytest (sdk/python)"
(cd sdk/python && "$LEOFLOW_PYTHON" -m pytest -q)
echo "== pytest (charts)"
"$LEOFLOW_PYTHON" -m pytest -q charts/tests

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== leoflow-core stays pure (no sqlx, tokio or tonic, not even through a dependency)"
impure=$(cargo tree -p leoflow-core -e normal --prefix none | grep -E '^(sqlx|tokio|tonic)[ -]' || true)
if [ -n "$impure" ]; then
    echo "leoflow-core depends on:" >&2
    echo "$impure" | sort -u >&2
    exit 1
fi
echo "== the API spells no SQL (its reads go through leoflow_projector::read, its writes through control)"
sql=$(grep -rnE 'sqlx::(query|query_as|query_scalar)\b|QueryBuilder|AssertSqlSafe' api/src || true)
if [ -n "$sql" ]; then
    echo "SQL in api/src; move it into projector/src/read/ (or a command of scheduler::control):" >&2
    echo "$sql" >&2
    exit 1
fi
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-features --no-fail-fast
else
    cargo test --workspace --all-features --no-fail-fast
fi
