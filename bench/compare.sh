#!/usr/bin/env bash
# Portcullis side by side with the proxies a team would otherwise deploy, in one run on
# loopback, same wrk settings for every row:
#   a fixed ~200-byte JSON from one nginx backend that every proxy forwards to;
#   the backend directly; nginx as a plain reverse proxy (upstream keep-alive);
#   HAProxy verifying a bearer JWT on every request (HS256, and ES256 with the key
#   Portcullis signs with) and forwarding; Portcullis on a public route, and on a route
#   that needs a role, with a token Portcullis issued; all of it over plain HTTP and TLS.
#   Beside them, a second Portcullis whose upstream is the same backend behind TLS
#   (`https://`, verified against a CA file), on the same public route; and a third
#   whose store is PostgreSQL (a throwaway cluster on loopback) instead of sled, on the
#   role route and on a rate-limited route (whose budget lives in the shared store).
# Also: the role route with a cookie session instead of a bearer token, and /auth/verify
# (forward-auth) deciding that route for another proxy.
# After the table, logins per second with each store (wrk POSTing one account's login).
# Prints one table with each figure's ratio to HAProxy-with-JWT and to nginx, and stops
# everything it started.
# Usage: bench/compare.sh [DURATION] [CONNECTIONS...]   (defaults: 10s, 32 256)
# ROUNDS=N runs every row N times, the rounds one after another (so drift on the machine
# touches every row alike), each round starting at another row, and prints each figure's
# median.
# PORTCULLIS_BIN=PATH measures that build instead of target/release/portcullis;
# ONLY=REGEX keeps just the rows whose name matches.
# BASELINE_BIN=PATH adds rows for a second build (e.g. the one before a change) in the
# same run, on its own ports, data directory and token, so the two are compared in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
shift || true
concurrencies=("${@:-32 256}")
read -r -a concurrencies <<<"${concurrencies[*]}"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release --workspace --quiet

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- Portcullis, ES256 so that HAProxy can verify the same tokens ---------------------
mkdir -p "$work/policies"
cat > "$work/policies/bench.toml" <<TOML
upstream = "backend"
[[route]]
name = "public"
methods = ["GET"]
path = "/api/products/{id}"
public = true
[[route]]
name = "orders"
methods = ["GET"]
path = "/api/orders"
roles = ["customer"]
[[route]]
name = "limited"
methods = ["GET"]
path = "/api/limited/{id}"
roles = ["customer"]
rate_limit = "1000000/sec"
TOML
password='Bench!Passw0rd7'
# The backend's certificate for its TLS listener (the HTTPS-upstream row), self-signed:
# the gateway of that row trusts it as its `[upstream_tls] ca`.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$work/backend.key" -out "$work/backend.crt" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
  -addext extendedKeyUsage=serverAuth 2>/dev/null
# start_gateway BIN NAME TLS_PORT PLAIN_PORT [UPSTREAM_URL [TOML]]: a gateway with its own
# data directory under $work/NAME, one customer account, serving until the script ends;
# its upstream is the plain backend unless UPSTREAM_URL says otherwise, TOML is appended.
start_gateway() {
  local bin=$1 name=$2 tls=$3 plain=$4 upstream=${5:-http://127.0.0.1:19001} extra=${6:-}
  mkdir -p "$work/$name"
  cat > "$work/$name/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$tls"
plain_listen = "127.0.0.1:$plain"
public_url = "https://localhost:$tls"
data_dir = "$work/$name/data"
policies = "$work/policies"
[upstreams]
backend = "$upstream"
$extra
[rate_limit]
auth_per_ip = "1000/sec"
[tokens]
access_ttl = "1h"
algorithm = "ES256"
[roles]
customer = { description = "bench" }
TOML
  echo "$password" | $bin --config "$work/$name/gateway.toml" user add --email tester@example.com --role customer --password-stdin >/dev/null
  RUST_LOG=warn $bin serve --config "$work/$name/gateway.toml" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do [ -f "$work/$name/data/tls/gateway.key" ] && curl -s -o /dev/null "http://127.0.0.1:$plain/healthz" && break; sleep 0.1; done
}
gw=${PORTCULLIS_BIN:-target/release/portcullis}
start_gateway "$gw" gw 19443 19080
ln -s "$work/gw/data" "$work/data"
$gw --config "$work/gw/gateway.toml" keys public-pem > "$work/es256.pem"
if [ -n "${BASELINE_BIN:-}" ]; then start_gateway "$BASELINE_BIN" base 19543 19180; fi
# The same build and policies, its upstream the backend behind TLS (port 19004).
start_gateway "$gw" gwtls 19444 19081 https://127.0.0.1:19004 "[upstream_tls.backend]
ca = \"$work/backend.crt\""
cat "$work/data/tls/gateway.crt" "$work/data/tls/gateway.key" > "$work/combined.pem"

# --- PostgreSQL: a throwaway cluster on loopback, and the same build with [store] on it -
source bench/postgres.sh
trap 'cleanup; postgres_down' EXIT
postgres_up 19432
start_gateway "$gw" gwpg 19445 19082 http://127.0.0.1:19001 "[store]
backend = \"postgres\"
url = \"postgres://portcullis@127.0.0.1:19432/portcullis\""

# --- nginx: the backend and the plain reverse proxy ----------------------------------
body='{"id":3,"name":"Yoga mat","category":"fitness","price":29.99,"stock":60,"description":"A 6 mm non-slip mat for yoga and pilates, with a carry strap.","tags":["yoga","fitness"]}'
cat > "$work/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
  upstream backend { server 127.0.0.1:19001; keepalive 256; }
  server {
    listen 127.0.0.1:19001;
    location / { default_type application/json; return 200 '$body'; }
  }
  server {
    listen 127.0.0.1:19004 ssl;
    ssl_certificate $work/backend.crt;
    ssl_certificate_key $work/backend.key;
    location / { default_type application/json; add_header X-Backend-Tls yes; return 200 '$body'; }
  }
  server {
    listen 127.0.0.1:19002;
    listen 127.0.0.1:19442 ssl http2;
    ssl_certificate $work/data/tls/gateway.crt;
    ssl_certificate_key $work/data/tls/gateway.key;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
mkdir -p "$work/nginx-tmp"
nginx -c "$work/nginx.conf" -p "$work"

# --- HAProxy verifying the bearer JWT on every request --------------------------------
hs_secret='bench-shared-secret-for-hs256-comparison'
cat > "$work/haproxy.cfg" <<HAPROXY
global
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend hs256
  bind 127.0.0.1:19010
  bind 127.0.0.1:19450 ssl crt $work/combined.pem alpn h2,http/1.1
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str HS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$hs_secret") -m int 1 }
  default_backend backend
frontend es256
  bind 127.0.0.1:19011
  bind 127.0.0.1:19451 ssl crt $work/combined.pem alpn h2,http/1.1
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str ES256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$work/es256.pem") -m int 1 }
  default_backend backend
backend backend
  http-reuse always
  server s1 127.0.0.1:19001
HAPROXY
haproxy -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 & pids+=($!)

for port in 19001 19002 19010 19080 19081 19082; do
  up=no
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && { up=yes; break; }; sleep 0.1; done
  if [ $up = no ]; then echo "nothing answers on port $port" >&2; cat "$work/haproxy.log" "$work/nginx-error.log" >&2 2>/dev/null; exit 1; fi
done

login() {
  curl -sk "https://127.0.0.1:$1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}
token=$(login 19443)
pg_token=$(login 19445)
# A cookie session for the cookie rows: the login page's form, posted as a browser does.
jar=$work/cookies.txt
curl -sk -c "$jar" -b "$jar" -o "$work/login.html" https://127.0.0.1:19443/auth/login
csrf=$(grep -o 'name="csrf" value="[^"]*"' "$work/login.html" | head -1 | sed -E 's/.*value="([^"]*)"/\1/')
curl -sk -c "$jar" -b "$jar" -o /dev/null -H "Origin: https://localhost:19443" \
  --data-urlencode "email=tester@example.com" --data-urlencode "password=$password" --data-urlencode "csrf=$csrf" \
  https://127.0.0.1:19443/auth/login
session=$(awk '$6 == "__Host-portcullis" {print $7}' "$jar")
[ -n "$session" ] || { echo "the form login set no session cookie" >&2; exit 1; }
[ -n "${BASELINE_BIN:-}" ] && base_token=$(login 19543)
hs_token=$(python3 - "$hs_secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"sub": "u-bench", "roles": ["customer"], "exp": int(time.time()) + 3600}).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
)
# Every JWT row must really verify: a refused token would make a proxy look fast.
checks=("http://127.0.0.1:19010/api/orders|$hs_token" "http://127.0.0.1:19011/api/orders|$token" "http://127.0.0.1:19080/api/orders|$token"
  "http://127.0.0.1:19080/api/limited/1|$token" "http://127.0.0.1:19082/api/orders|$pg_token" "http://127.0.0.1:19082/api/limited/1|$pg_token")
[ -n "${BASELINE_BIN:-}" ] && checks+=("http://127.0.0.1:19180/api/orders|$base_token")
for check in "${checks[@]}"; do
  url=${check%%|*}; tok=${check#*|}
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url" -H "Authorization: Bearer $tok")
  bad=$(curl -s -o /dev/null -w '%{http_code}' "$url" -H "Authorization: Bearer ${tok}x")
  [ "$code" = 200 ] && [ "$bad" = 401 ] || { echo "token check failed at $url: $code / $bad" >&2; exit 1; }
done
# The cookie row must really be authenticated by the cookie, the verify row really decided.
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19080/api/orders -H "Cookie: __Host-portcullis=$session")
bad=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19080/api/orders -H "Cookie: __Host-portcullis=${session}x")
[ "$code" = 200 ] && [ "$bad" = 401 ] || { echo "cookie check failed: $code / $bad" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19080/auth/verify -H "Authorization: Bearer $token" \
  -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /api/orders")
bad=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19080/auth/verify -H "Authorization: Bearer ${token}x" \
  -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /api/orders")
[ "$code" = 200 ] && [ "$bad" = 401 ] || { echo "forward-auth check failed: $code / $bad" >&2; exit 1; }
# The HTTPS-upstream rows must really reach the backend over TLS (its TLS listener marks
# its answers), on both of the gateway's listeners.
for url in http://127.0.0.1:19081/api/products/3 https://127.0.0.1:19444/api/products/3; do
  curl -sk -D - -o /dev/null "$url" | grep -qi '^x-backend-tls: yes' \
    || { echo "the HTTPS-upstream gateway did not answer through the TLS backend at $url" >&2; exit 1; }
done

rounds=${ROUNDS:-1}
declare -A rps p50 p99
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.2f", v/1000; else if (v ~ /ms$/) printf "%.2f", v+0; else printf "%.2f", v*1000 }'; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
measure() {
  local key=$1 conns=$2; shift 2
  local out; out=$(wrk -t1 -c"$conns" -d"$duration" --latency "$@")
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers in $key: $(grep Non-2xx <<<"$out")" >&2; exit 1; fi
  rps[$key]+=" $(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50[$key]+=" $(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")"
  p99[$key]+=" $(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "-" }'; }

rows=(
  "backend directly|http|http://127.0.0.1:19001/api/products/3|"
  "nginx proxy, no auth|http|http://127.0.0.1:19002/api/products/3|"
  "HAProxy + JWT HS256|http|http://127.0.0.1:19010/api/orders|$hs_token"
  "HAProxy + JWT ES256|http|http://127.0.0.1:19011/api/orders|$token"
  "Portcullis, public route|http|http://127.0.0.1:19080/api/products/3|"
  "Portcullis, role route + token|http|http://127.0.0.1:19080/api/orders|$token"
  "Portcullis public, TLS upstream|http|http://127.0.0.1:19081/api/products/3|"
  "Portcullis role route, PG store|http|http://127.0.0.1:19082/api/orders|$pg_token"
  "Portcullis rate-limited, sled|http|http://127.0.0.1:19080/api/limited/1|$token"
  "Portcullis rate-limited, PG|http|http://127.0.0.1:19082/api/limited/1|$pg_token"
  "Portcullis role route + cookie|http|http://127.0.0.1:19080/api/orders||Cookie: __Host-portcullis=$session"
  "Portcullis /auth/verify, token|http|http://127.0.0.1:19080/auth/verify|$token|X-Forwarded-Method: GET^X-Forwarded-Uri: /api/orders"
  "nginx proxy, no auth|tls|https://127.0.0.1:19442/api/products/3|"
  "HAProxy + JWT HS256|tls|https://127.0.0.1:19450/api/orders|$hs_token"
  "HAProxy + JWT ES256|tls|https://127.0.0.1:19451/api/orders|$token"
  "Portcullis, public route|tls|https://127.0.0.1:19443/api/products/3|"
  "Portcullis, role route + token|tls|https://127.0.0.1:19443/api/orders|$token"
  "Portcullis public, TLS upstream|tls|https://127.0.0.1:19444/api/products/3|"
  "Portcullis role route, PG store|tls|https://127.0.0.1:19445/api/orders|$pg_token"
  "Portcullis rate-limited, sled|tls|https://127.0.0.1:19443/api/limited/1|$token"
  "Portcullis rate-limited, PG|tls|https://127.0.0.1:19445/api/limited/1|$pg_token"
  "Portcullis role route + cookie|tls|https://127.0.0.1:19443/api/orders||Cookie: __Host-portcullis=$session"
  "Portcullis /auth/verify, token|tls|https://127.0.0.1:19443/auth/verify|$token|X-Forwarded-Method: GET^X-Forwarded-Uri: /api/orders"
)
if [ -n "${BASELINE_BIN:-}" ]; then
  rows+=(
    "baseline build, public route|http|http://127.0.0.1:19180/api/products/3|"
    "baseline build, role route|http|http://127.0.0.1:19180/api/orders|$base_token"
    "baseline build, public route|tls|https://127.0.0.1:19543/api/products/3|"
    "baseline build, role route|tls|https://127.0.0.1:19543/api/orders|$base_token"
  )
fi
# ONLY=REGEX measures just the rows whose name matches (e.g. ONLY='Portcullis|baseline'
# for a before/after comparison of two builds, every row still checked first).
if [ -n "${ONLY:-}" ]; then
  kept=()
  for row in "${rows[@]}"; do [[ ${row%%|*} =~ $ONLY ]] && kept+=("$row"); done
  rows=("${kept[@]}")
fi
# Each round starts the list at another row, so no row always runs in the same slot (a
# row's place in the sequence alone moved it by up to 10% on this 2-core machine).
nrows=${#rows[@]}
for ((round = 1; round <= rounds; round++)); do
  offset=$(( (round - 1) * nrows / rounds ))
  for conns in "${concurrencies[@]}"; do
    for ((i = 0; i < nrows; i++)); do
      row=${rows[$(( (i + offset) % nrows ))]}
      IFS='|' read -r name transport url tok extra <<<"$row"
      args=("$url")
      [ -n "$tok" ] && args=(-H "Authorization: Bearer $tok" "$url")
      # A fifth field: further request headers, separated by '^'.
      if [ -n "${extra:-}" ]; then
        IFS='^' read -r -a hdrs <<<"$extra"
        for h in "${hdrs[@]}"; do args=(-H "$h" "${args[@]}"); done
      fi
      measure "$conns|$transport|$name" "$conns" "${args[@]}"
    done
  done
done
for k in "${!rps[@]}"; do
  rps[$k]=$(median "${rps[$k]}")
  p50[$k]=$(median "${p50[$k]}")
  p99[$k]=$(median "${p99[$k]}")
done

echo
echo "wrk -t1 -d$duration on loopback, median of $rounds round(s); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
for conns in "${concurrencies[@]}"; do
  echo
  printf '| %-32s | %-5s | %10s | %8s | %8s | %9s | %9s | %11s |\n' "c$conns" "" "req/s" "p50 ms" "p99 ms" "/HAProxy" "/nginx" "p99/HAProxy"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "----------------------------------" "-------" "------------" "----------" "----------" "-----------" "-----------" "-------------"
  for row in "${rows[@]}"; do
    IFS='|' read -r name transport _ _ <<<"$row"
    k="$conns|$transport|$name"
    hk="$conns|$transport|HAProxy + JWT HS256"
    nk="$conns|$transport|nginx proxy, no auth"
    printf '| %-32s | %-5s | %10s | %8s | %8s | %9s | %9s | %11s |\n' "$name" "$transport" "${rps[$k]}" "${p50[$k]}" "${p99[$k]}" \
      "$(ratio "${rps[$k]}" "${rps[$hk]:-}")" "$(ratio "${rps[$k]}" "${rps[$nk]:-}")" "$(ratio "${p99[$k]}" "${p99[$hk]:-}")"
  done
done

# --- logins per second with each store ------------------------------------------------
# One account's password login, over TLS, 8 connections: argon2id and the session write
# to the store dominate. Every answer must be 200 (auth_per_ip is 1000/sec here).
cat > "$work/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"tester@example.com","password":"$password"}'
LUA
if [ -z "${ONLY:-}" ] || [[ "logins" =~ $ONLY ]]; then
  echo
  printf '| %-32s | %10s | %8s | %8s |\n' "logins, c8, TLS" "logins/s" "p50 ms" "p99 ms"
  printf '|%s|%s|%s|%s|\n' "----------------------------------" "------------" "----------" "----------"
  for row in "sled store|19443" "PostgreSQL store|19445"; do
    name=${row%%|*}; port=${row#*|}
    out=$(wrk -t1 -c8 -d"$duration" --latency -s "$work/login.lua" "https://127.0.0.1:$port/auth/login")
    if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers in logins, $name: $(grep Non-2xx <<<"$out")" >&2; exit 1; fi
    printf '| %-32s | %10s | %8s | %8s |\n' "$name" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
      "$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")" "$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")"
  done
fi
