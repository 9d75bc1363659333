#!/usr/bin/env bash
# Two gateways as one, on loopback: PostgreSQL, two Portcullis gateways sharing it
# ([store] backend = "postgres"), the demo shop behind them, and HAProxy in front passing
# connections to the gateways with the PROXY protocol (so each gateway sees the real
# client address).
#
#   examples/replicas/run.sh           starts everything, prints curl lines, waits for Ctrl-C
#   examples/replicas/run.sh --check   runs the curl lines itself and fails unless a logout
#                                      on one gateway is refused on the other; then stops
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql) and HAProxy
# (apt-get install haproxy). Set PORTCULLIS_BIN and UPSTREAM_DEMO_BIN to use binaries
# already built; otherwise this builds them (release, about 7 minutes the first time).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
check=false
[ "${1:-}" = "--check" ] && check=true

fail() { echo "replicas: $*" >&2; exit 1; }

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -x "$pg_bin/initdb" ] || fail "PostgreSQL's server binaries are missing: apt-get install postgresql"
command -v haproxy >/dev/null || fail "HAProxy is missing: apt-get install haproxy"

if [ -z "${PORTCULLIS_BIN:-}" ] || [ -z "${UPSTREAM_DEMO_BIN:-}" ]; then
    (cd "$root" && cargo build --release --quiet --bin portcullis -p portcullis -p upstream-demo)
    PORTCULLIS_BIN=$root/target/release/portcullis
    UPSTREAM_DEMO_BIN=$root/target/release/upstream-demo
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PG_PORT=$(free_port)
SHOP_PORT=$(free_port)
A_PORT=$(free_port)
B_PORT=$(free_port)
LB_PORT=$(free_port)
LB_A_PORT=$(free_port)
LB_B_PORT=$(free_port)

work=$(mktemp -d /tmp/portcullis-replicas.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -f "$work/pg/data/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true
    fi
    if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: as root, run it as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# --- PostgreSQL: a throwaway cluster, a role and a database for the gateways -----------
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >"$work/initdb.log"
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $work/pg" start >/dev/null
STORE_PASSWORD=$(openssl rand -hex 16)
as_pg psql -q -h "$work/pg" -p "$PG_PORT" -U postgres -c "CREATE ROLE portcullis LOGIN PASSWORD '$STORE_PASSWORD'"
as_pg psql -q -h "$work/pg" -p "$PG_PORT" -U postgres -c "CREATE DATABASE portcullis OWNER portcullis"

# Every gateway of one store shares the secret key (it seals the TOTP secrets and the
# signing keys in the database) and the database password.
export PORTCULLIS_SECRET_KEY
PORTCULLIS_SECRET_KEY=$(openssl rand -base64 32)
export PORTCULLIS_STORE_PASSWORD=$STORE_PASSWORD

# --- the demo shop -----------------------------------------------------------------------
"$UPSTREAM_DEMO_BIN" --listen "127.0.0.1:$SHOP_PORT" >"$work/shop.log" 2>&1 &
pids+=($!)

# --- two gateways: one certificate, one store --------------------------------------------
mkdir -p "$work/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$work/certs/gateway.key" -out "$work/certs/gateway.crt" 2>/dev/null
for gw in a b; do
    port_var=${gw^^}_PORT
    mkdir -p "$work/$gw"
    cat >"$work/$gw/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:${!port_var}"
public_url = "https://localhost:$LB_PORT"
data_dir = "data"
policies = "$root/policies"
trusted_proxies = ["127.0.0.1/32"]   # HAProxy: only it may say who the client is
proxy_protocol = true

[tls]
cert = "$work/certs/gateway.crt"
key = "$work/certs/gateway.key"

[store]
backend = "postgres"
url = "postgres://portcullis@127.0.0.1:$PG_PORT/portcullis"

[upstreams]
shop = "http://127.0.0.1:$SHOP_PORT"

[registration]
enabled = true
default_roles = ["customer"]

[roles]
customer = { description = "self-registered shoppers" }
inventory = { description = "clerks who manage the catalogue" }
support = { description = "customer service" }
admin = { description = "everything" }
EOF
done
"$PORTCULLIS_BIN" --config "$work/a/gateway.toml" serve >"$work/a.log" 2>&1 &
pids+=($!)
"$PORTCULLIS_BIN" --config "$work/b/gateway.toml" serve >"$work/b.log" 2>&1 &
pids+=($!)

# --- HAProxy: one balanced front, and one front per gateway to pick one by hand ----------
cat >"$work/haproxy.cfg" <<EOF
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend balanced
    bind 127.0.0.1:$LB_PORT
    default_backend gateways
frontend only_a
    bind 127.0.0.1:$LB_A_PORT
    default_backend gateway_a
frontend only_b
    bind 127.0.0.1:$LB_B_PORT
    default_backend gateway_b
backend gateways
    balance roundrobin
    server a 127.0.0.1:$A_PORT send-proxy-v2 check
    server b 127.0.0.1:$B_PORT send-proxy-v2 check
backend gateway_a
    server a 127.0.0.1:$A_PORT send-proxy-v2
backend gateway_b
    server b 127.0.0.1:$B_PORT send-proxy-v2
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)

CA=$work/certs/gateway.crt
curl_to() { # PORT PATH [curl args...]: a request through HAProxy's front PORT
    local port=$1 path=$2
    shift 2
    curl -s --cacert "$CA" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port$path" "$@"
}
for port in "$LB_A_PORT" "$LB_B_PORT"; do
    for _ in $(seq 150); do
        curl_to "$port" /healthz -o /dev/null && break
        sleep 0.2
    done
    curl_to "$port" /healthz -o /dev/null || fail "no gateway behind port $port: see $work/a.log and $work/b.log"
done

# An account made through the shared store, straight from the command line.
"$PORTCULLIS_BIN" --config "$work/a/gateway.toml" user add --email alice@example.com --role customer >"$work/alice.txt"
ALICE_ID=$(sed -n 's/^id: //p' "$work/alice.txt")
PASSWORD=$(sed -n 's/^password: //p' "$work/alice.txt")
[ -n "$ALICE_ID" ] && [ -n "$PASSWORD" ] || fail "user add printed no id or password"

if ! $check; then
    cat <<EOF

Two gateways, one PostgreSQL, HAProxy in front (PROXY protocol v2):
  balanced       https://localhost:$LB_PORT   (round robin over both)
  gateway a only https://localhost:$LB_A_PORT
  gateway b only https://localhost:$LB_B_PORT
The account alice@example.com ($ALICE_ID) has the password $PASSWORD

Paste into another terminal:

CA=$CA
# log in on gateway a
TOKEN=\$(curl -s --cacert \$CA https://localhost:$LB_A_PORT/auth/login -H 'content-type: application/json' \\
  -d '{"email":"alice@example.com","password":"$PASSWORD"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# the token works on gateway b (the signing keys are shared): 200
curl -s -o /dev/null -w '%{http_code}\n' --cacert \$CA https://localhost:$LB_B_PORT/api/customers/$ALICE_ID -H "Authorization: Bearer \$TOKEN"
# log out on gateway a
curl -s -o /dev/null -w '%{http_code}\n' --cacert \$CA -X POST https://localhost:$LB_A_PORT/auth/logout -H "Authorization: Bearer \$TOKEN"
# the same token on gateway b, a moment later: 401 (revoked)
curl -s --cacert \$CA https://localhost:$LB_B_PORT/api/customers/$ALICE_ID -H "Authorization: Bearer \$TOKEN"; echo

Logs: $work/{a,b,shop,haproxy}.log   Ctrl-C stops everything.
EOF
    wait
    exit 0
fi

# --- --check: the curl lines above, run and checked ----------------------------------------
TOKEN=$(curl_to "$LB_A_PORT" /auth/login -H 'content-type: application/json' \
    -d "{\"email\":\"alice@example.com\",\"password\":\"$PASSWORD\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
[ -n "$TOKEN" ] || fail "login on gateway a gave no token"
status=$(curl_to "$LB_B_PORT" "/api/customers/$ALICE_ID" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN")
[ "$status" != 401 ] && [ "$status" != 403 ] || fail "gateway b refused gateway a's token: $status"
status=$(curl_to "$LB_A_PORT" /auth/logout -X POST -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN")
[ "${status:0:1}" = 2 ] || fail "logout on gateway a: $status"
refused=false
for _ in $(seq 20); do
    status=$(curl_to "$LB_B_PORT" "/api/customers/$ALICE_ID" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN")
    if [ "$status" = 401 ]; then refused=true; break; fi
    sleep 0.1
done
$refused || fail "gateway b still answers $status to the token 2 s after the logout on gateway a"
# The audit trail is one chain with records from both gateways.
"$PORTCULLIS_BIN" --config "$work/b/gateway.toml" audit verify >"$work/verify.txt" || fail "audit verify: $(cat "$work/verify.txt")"
echo "replicas: a logout on gateway a was refused on gateway b; the audit chain verifies"
