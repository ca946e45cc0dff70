#!/bin/bash
# The primary's first start (docker-entrypoint-initdb.d): the role the streaming replica connects as, and its hba line.
set -euo pipefail
password="$(cat /run/secrets/replication_password)"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v password="$password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
