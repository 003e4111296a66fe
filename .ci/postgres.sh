# Sourced by .ci/run: a PostgreSQL server on localhost for the several-workers tests.
#
# Installs the Debian package `postgresql` if missing (root, apt-get), starts its
# cluster, creates the role `promptopt` (password `promptopt`) and the database
# `promptopt_test`, and exports PROMPTOPT_TEST_POSTGRES. Idempotent: a second run
# only checks that everything is there (a second or two). Where it cannot set the
# server up (not root, no apt-get), it says so and the PostgreSQL tests are skipped.

_pg_setup() {
    local url="postgresql://promptopt:promptopt@localhost:5432/promptopt_test"
    if [ -n "${PROMPTOPT_TEST_POSTGRES:-}" ]; then
        echo "postgres: using PROMPTOPT_TEST_POSTGRES from the environment"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "postgres: not root; the PostgreSQL tests run only if a server answers at $url"
        return 0
    fi
    if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
        if ! command -v apt-get >/dev/null; then
            echo "postgres: no PostgreSQL and no apt-get; the PostgreSQL tests will be skipped"
            return 0
        fi
        echo "postgres: installing the Debian package postgresql"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq postgresql >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
        } || { echo "postgres: apt-get install postgresql failed; tests will be skipped"; return 0; }
    fi
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if command -v pg_lsclusters >/dev/null; then
        local state
        state=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')
        if [ -z "$state" ]; then
            pg_createcluster "$version" main >/dev/null
        fi
        if [ "$state" != online ]; then
            pg_ctlcluster "$version" main start
        fi
    fi
    local bin="/usr/lib/postgresql/$version/bin" i
    for i in $(seq 1 50); do
        "$bin/pg_isready" -q -h localhost -p 5432 && break
        sleep 0.2
    done
    local psql=(runuser -u postgres -- psql -qtAX)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'promptopt'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE promptopt LOGIN PASSWORD 'promptopt'"
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'promptopt_test'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE promptopt_test OWNER promptopt"
    fi
    export PROMPTOPT_TEST_POSTGRES="$url"
    echo "postgres: PostgreSQL $version on localhost:5432, PROMPTOPT_TEST_POSTGRES=$url"
}
_pg_setup
unset -f _pg_setup
