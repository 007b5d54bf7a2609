#!/bin/sh
# Run PostgreSQL 15 on 127.0.0.1 only (the control plane shares this network namespace;
# workspaces cannot reach its loopback). On first start, make the cluster and Berth's
# database with the password from .env; on later starts, set that password again.
set -eu
: "${POSTGRES_PASSWORD:?is not set (install.sh writes it to .env)}"
USER_NAME="${POSTGRES_USER:-berth}"
DB_NAME="${POSTGRES_DB:-berth}"

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
# The password as an SQL string literal's body.
PASSWORD_SQL=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")

# A first start that died half-way leaves a cluster without the marker: start over
# (nothing can be in it yet).
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$PGDATA/berth-initialized" ]; then
    echo "postgres: removing an unfinished cluster from an interrupted first start"
    find "$PGDATA" -mindepth 1 -delete
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "postgres: creating the cluster in $PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb --username=postgres --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' " -w start >/dev/null
    # The password travels on stdin, never on a command line.
    printf "CREATE ROLE \"%s\" LOGIN PASSWORD '%s';\nCREATE DATABASE \"%s\" OWNER \"%s\";\n" \
        "$USER_NAME" "$PASSWORD_SQL" "$DB_NAME" "$USER_NAME" \
        | as_postgres psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    touch "$PGDATA/berth-initialized"
else
    # .env holds the password; an .env written again (lost, or a fresh checkout over the
    # old volumes) must not lock Berth out of its own database, so every start makes the
    # role's password agree with it, over the local socket only.
    as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' " -w start >/dev/null
    printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$USER_NAME" "$PASSWORD_SQL" \
        | as_postgres psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres
    as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses=127.0.0.1 -c unix_socket_directories=/run/postgresql
