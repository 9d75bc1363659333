# A throwaway PostgreSQL cluster for the load scripts (sourced from the repository root):
# `postgres_up PORT` installs Debian's server if missing, starts a cluster on loopback
# (as the postgres user when run as root), makes the `portcullis` role and database, and
# exports PORTCULLIS_STORE_PASSWORD and PORTCULLIS_SECRET_KEY for the gateways;
# `postgres_start` starts it again after `postgres_stop`; `postgres_down` removes it (the
# caller's EXIT trap calls it).

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ ! -x "$pg_bin/initdb" ]; then
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdir=$(mktemp -d /tmp/portcullis-bench-pg.XXXXXX)
chmod 755 "$pgdir"
[ "$(id -u)" = 0 ] && chown postgres "$pgdir"

postgres_start() {
  as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pgdir" start >/dev/null
}
postgres_stop() { as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null; }
postgres_down() { postgres_stop 2>/dev/null || true; rm -rf "$pgdir"; }

postgres_up() {
  pg_port=$1
  as_pg "$pg_bin/initdb" -D "$pgdir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  postgres_start
  export PORTCULLIS_STORE_PASSWORD PORTCULLIS_SECRET_KEY
  PORTCULLIS_STORE_PASSWORD=$(openssl rand -hex 16)
  PORTCULLIS_SECRET_KEY=$(openssl rand -base64 32)
  as_pg psql -q -h "$pgdir" -p "$pg_port" -U postgres -c "CREATE ROLE portcullis LOGIN PASSWORD '$PORTCULLIS_STORE_PASSWORD'"
  as_pg psql -q -h "$pgdir" -p "$pg_port" -U postgres -c "CREATE DATABASE portcullis OWNER portcullis"
}
