#!/bin/bash
# The streaming replica's start: on the first (empty data directory) a pg_basebackup of the primary written as a
# standby (-R: standby.signal and primary_conninfo); then the image's own entrypoint runs PostgreSQL, which follows.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    PGPASSWORD="$(cat /run/secrets/replication_password)"
    export PGPASSWORD
    until pg_isready -q -h "$PRIMARY_HOST" -U replicator; do sleep 1; done
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    gosu postgres pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" -X stream -R
    unset PGPASSWORD
fi
exec docker-entrypoint.sh postgres -c hot_standby=on
