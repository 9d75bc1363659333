#!/usr/bin/env bash
# Instructions per request, counted with valgrind's callgrind: a release gateway (one
# connection worker, its plain-HTTP listener, so TLS stays out) serves N1 and then, in a
# second run, N2 requests on one keep-alive connection (h2load --h1 -c1), on the public
# route and on the role route with a bearer token; the difference of the two runs' totals
# divided by N2 - N1 is the cost of one request. Counting is switched on only around the
# N requests (callgrind_control), after start-up and the row's checks, so background
# threads count only while requests run; what is the same in both runs (the connection's
# set-up) cancels in the difference. valgrind runs threads one at a time (--fair-sched).
# The backend is one nginx answering a fixed ~200-byte JSON. The token comes from a login
# made before valgrind starts (argon2 under valgrind would take minutes), in the same data
# directory, so the counted runs see only proxied requests.
# Usage: bench/callgrind.sh [N1] [N2]   (defaults: 1000, 5000)
# PORTCULLIS_BIN=PATH counts that build instead of target/release/portcullis (no cargo
# build then); BASELINE_BIN=PATH counts a second build the same way and prints, per route,
# the functions whose instructions per request changed most between the two
# (callgrind_annotate on each run, differences of N2 - N1 per request).
# KEEP=DIR keeps the callgrind output files there. ROUTES="public role audited" also
# counts the role route with `audit = true`, its records' writer included (counting
# stops half a second after the last request, once the writer has taken it); "cookie"
# counts the role route authenticated by a cookie session (from the login page's form)
# instead of the bearer token; "fields" and "unfiltered" count a ~2 KB JSON array of ten
# objects through a role route with `response_fields` (hiding one field of each) and
# through the same route without it.
# CONNS=N spreads the requests over N keep-alive connections (h2load -cN) instead of one:
# what a request costs when many connections are ready at once (their set-up is the same
# in both runs and cancels).
# CACHE_SIM=1 also simulates the caches, the last level sized as this machine's L2
# (from sysfs), and prints the data reads and writes a request misses in it (memory that
# is not in the core's own cache when the request touches it: with many connections,
# their per-connection state; see CONNS) and the instruction fetches it misses in the
# first-level instruction cache (callgrind's default, 32 KiB: how much code a request
# runs through, more than the core keeps at hand).
# NGINX_PROXY=1 also counts an nginx plain proxy (one worker, upstream keep-alive, the same
# backend; compare.sh's proxy) the same way, on the public route's URL, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/form_login.sh
n1=${1:-1000}
n2=${2:-5000}
routes=${ROUTES:-public role}
conns=${CONNS:-1}
cache_args=()
if [ "${CACHE_SIM:-0}" = 1 ]; then
  l2=/sys/devices/system/cpu/cpu0/cache/index2
  cache_args=(--cache-sim=yes "--LL=$(( $(sed 's/K$//' "$l2/size") * 1024 )),$(cat "$l2/ways_of_associativity"),$(cat "$l2/coherency_line_size")")
fi
[ "$n2" -gt "$n1" ] || { echo "N2 must be larger than N1" >&2; exit 1; }
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[ -n "${PORTCULLIS_BIN:-}" ] || [ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin portcullis --quiet
gw=${PORTCULLIS_BIN:-target/release/portcullis}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The field-list routes' answer: ten catalogue entries (~2 KB), each with a field that
# the filtered route hides.
source bench/catalog.sh
catalog=$(catalog_json)
body='{"id":3,"name":"Yoga mat","category":"fitness","price":29.99,"stock":60,"description":"A 6 mm non-slip mat for yoga and pilates, with a carry strap.","tags":["yoga","fitness"]}'
# The settings both nginx configurations share: no access log, keep-alive without a
# request limit, temporary files under $work.
nginx_common() {
  cat <<NGINX
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp;
  fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp;
  scgi_temp_path $work/nginx-tmp;
NGINX
}
mkdir -p "$work/nginx-tmp"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
$(nginx_common)
  server {
    listen 127.0.0.1:18001;
    location ~ ^/api/catalog(-all)?\$ { default_type application/json; return 200 '$catalog'; }
    location / { default_type application/json; return 200 '$body'; }
  }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work"

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
name = "audited"
methods = ["GET"]
path = "/api/audited/{id}"
roles = ["customer"]
audit = true
$(catalog_routes)
TOML
password='Bench!Passw0rd7'

# count BIN NAME: per-request instructions of build BIN on both routes, as
# "NAME|route|Ir(N1)|Ir(N2)|per request", the output files kept under $work/NAME.
count() {
  local bin=$1 name=$2 dir=$work/$2
  mkdir -p "$dir"
  cat > "$dir/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:18443"
plain_listen = "127.0.0.1:18080"
public_url = "https://localhost:18443"
data_dir = "$dir/data"
policies = "$work/policies"
workers = 1
[upstreams]
backend = "http://127.0.0.1:18001"
[rate_limit]
auth_per_ip = "1000/sec"
[tokens]
access_ttl = "1h"
algorithm = "ES256"
[roles]
customer = { description = "bench" }
TOML
  echo "$password" | $bin --config "$dir/gateway.toml" user add --email tester@example.com --role customer --password-stdin >/dev/null
  # A login without valgrind, for the token.
  RUST_LOG=warn $bin serve --config "$dir/gateway.toml" >/dev/null 2>&1 & local pid=$!
  up 200
  local token
  token=$(curl -sk https://127.0.0.1:18443/auth/login -H 'content-type: application/json' \
    -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  # And a cookie session, from the login page's form posted as a browser does.
  local session
  session=$(form_session 18443 "$password" "$dir") || { stop "$pid"; echo "$name: no cookie session" >&2; exit 1; }
  stop "$pid"
  local route url n out
  for route in $routes; do
    case $route in
      public) url=http://127.0.0.1:18080/api/products/3 ;;
      role | cookie) url=http://127.0.0.1:18080/api/orders ;;
      audited) url=http://127.0.0.1:18080/api/audited/1 ;;
      fields) url=http://127.0.0.1:18080/api/catalog ;;
      unfiltered) url=http://127.0.0.1:18080/api/catalog-all ;;
      *) echo "unknown route $route (public, role, audited, cookie, fields, unfiltered)" >&2; exit 1 ;;
    esac
    for n in "$n1" "$n2"; do
      out=$dir/callgrind.$route.$n
      RUST_LOG=warn valgrind --tool=callgrind "${cache_args[@]}" --callgrind-out-file="$out" -q --instr-atstart=no --fair-sched=yes \
        $bin serve --config "$dir/gateway.toml" >/dev/null 2>"$dir/valgrind.log" & pid=$!
      up 1200
      local auth=() bad=(-H "Authorization: Bearer ${token}x")
      [ $route = public ] || auth=(-H "Authorization: Bearer $token")
      [ $route != cookie ] || { auth=(-H "Cookie: __Host-portcullis=$session"); bad=(-H "Cookie: __Host-portcullis=${session}x"); }
      # The row is checked first: 200 on the route (401 with a corrupted token on the role
      # route), outside the counted requests (the same in both runs, so it cancels).
      [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" "${auth[@]}")" = 200 ] \
        || { echo "$name: $url does not answer 200" >&2; exit 1; }
      if [ $route != public ]; then
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" "${bad[@]}")" = 401 ] \
          || { echo "$name: $url accepts a corrupted token or cookie" >&2; exit 1; }
      fi
      # Counting covers only the N requests (and what runs beside them): start-up, the
      # checks and the first sight of the token are outside it.
      callgrind_control -i on "$pid" >/dev/null 2>&1
      h2load --h1 -n "$n" -c"$conns" -m1 "${auth[@]}" "$url" > "$dir/h2load.txt"
      # The audit writer takes its records at most 10 ms apart: let it write the last.
      [ $route != audited ] || sleep 0.5
      callgrind_control -i off "$pid" >/dev/null 2>&1
      grep -q "^status codes: $n 2xx" "$dir/h2load.txt" \
        || { echo "$name: not all $n requests to $url answered 2xx" >&2; grep -E '^(requests|status)' "$dir/h2load.txt" >&2; exit 1; }
      stop "$pid"
    done
    local a b
    a=$(total "$dir/callgrind.$route.$n1")
    b=$(total "$dir/callgrind.$route.$n2")
    echo "$name|$route|$a|$b|$(( (b - a) / (n2 - n1) ))|$(missed "$dir/callgrind.$route")"
  done
}
# up TENTHS: wait for the plain listener's /healthz.
up() {
  for _ in $(seq "$1"); do curl -s -o /dev/null http://127.0.0.1:18080/healthz && return; sleep 0.1; done
  echo "the gateway did not start" >&2; cat "$work"/*/valgrind.log >&2 2>/dev/null; exit 1
}
# stop PID: SIGTERM, and wait until it has exited (callgrind writes its file at exit).
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }
total() { awk '/^totals:/ { t += $2 } END { print t + 0 }' "$1"; }
# per_request EVENTS PREFIX: the named events (space-separated callgrind event names)
# summed, per request: (PREFIX.N2 - PREFIX.N1) / (N2 - N1).
per_request() {
  local count='/^events:/ { n = split(k, ks, " "); for (i = 2; i <= NF; i++) for (j = 1; j <= n; j++) if ($i == ks[j]) want[i] = 1 }
    /^totals:/ { for (i in want) t += $i } END { print t + 0 }'
  local a b
  a=$(awk -v k="$1" "$count" "$2.$n1")
  b=$(awk -v k="$1" "$count" "$2.$n2")
  echo $(( (b - a) / (n2 - n1) ))
}
# missed PREFIX: with CACHE_SIM=1, the last-level data misses (reads and writes) and the
# first-level instruction misses per request, as "DATA|CODE"; "-|-" without it.
missed() {
  [ "${CACHE_SIM:-0}" = 1 ] || { echo "-|-"; return; }
  echo "$(per_request "DLmr DLmw" "$1")|$(per_request I1mr "$1")"
}

# count_nginx: per-request instructions of an nginx plain proxy to the same backend, one
# worker process (no master), counted like the gateway (on only around the requests).
count_nginx() {
  local dir=$work/nginx-proxy n out pid
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
$(nginx_common)
  upstream backend { server 127.0.0.1:18001; keepalive 256; }
  server {
    listen 127.0.0.1:18081;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  local url=http://127.0.0.1:18081/api/products/3
  for n in "$n1" "$n2"; do
    out=$dir/callgrind.public.$n
    valgrind --tool=callgrind "${cache_args[@]}" --callgrind-out-file="$out" -q --instr-atstart=no \
      nginx -c "$dir/nginx.conf" -p "$dir" 2>"$dir/valgrind.log" & pid=$!
    for _ in $(seq 1200); do curl -s -o /dev/null "$url" && break; sleep 0.1; done
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "nginx proxy: $url does not answer 200" >&2; exit 1; }
    callgrind_control -i on "$pid" >/dev/null 2>&1
    h2load --h1 -n "$n" -c"$conns" -m1 "$url" > "$dir/h2load.txt"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    grep -q "^status codes: $n 2xx" "$dir/h2load.txt" || { echo "nginx proxy: not all $n requests answered 2xx" >&2; exit 1; }
    kill -QUIT "$pid"; wait "$pid" 2>/dev/null || true
  done
  local a b
  a=$(total "$dir/callgrind.public.$n1")
  b=$(total "$dir/callgrind.public.$n2")
  echo "nginx|public|$a|$b|$(( (b - a) / (n2 - n1) ))|$(missed "$dir/callgrind.public")"
}

count "$gw" current > "$work/results.txt"
[ -z "${BASELINE_BIN:-}" ] || count "$BASELINE_BIN" baseline >> "$work/results.txt"
[ "${NGINX_PROXY:-0}" != 1 ] || count_nginx >> "$work/results.txt"

echo
echo "callgrind, one worker, plain HTTP, $conns keep-alive connection(s); N1=$n1, N2=$n2 requests; $(date -u +%Y-%m-%d)"
echo "current: $gw${BASELINE_BIN:+; baseline: $BASELINE_BIN}"
echo
printf '| %-8s | %-6s | %14s | %14s | %12s | %14s | %14s |\n' build route "Ir(N1)" "Ir(N2)" "Ir/request" "L2 misses/req" "I1 misses/req"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ---------- -------- ---------------- ---------------- -------------- ---------------- ----------------
while IFS='|' read -r name route a b per miss code; do
  printf '| %-8s | %-6s | %14s | %14s | %12s | %14s | %14s |\n' "$name" "$route" "$a" "$b" "$per" "$miss" "$code"
done < "$work/results.txt"

# Where the difference is: per function, (Ir in N2 - Ir in N1) / (N2 - N1), both builds.
if [ -n "${BASELINE_BIN:-}" ]; then
  for route in $routes; do
    for b in current baseline; do
      for n in "$n1" "$n2"; do
        callgrind_annotate --threshold=100 --inclusive=no "$work/$b/callgrind.$route.$n" > "$work/$b/annotate.$route.$n" 2>/dev/null
      done
    done
    echo
    echo "$route route: functions whose instructions per request changed most (current - baseline)"
    python3 - "$work" "$route" "$n1" "$n2" <<'PY'
import sys
sys.path.insert(0, "bench")
from annotate import functions
work, route, n1, n2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def per_fn(build):
    runs = []
    for n in (n1, n2):
        d = {}
        for fn, ir in functions(f"{work}/{build}/annotate.{route}.{n}"):
            d[fn] = d.get(fn, 0) + ir
        runs.append(d)
    a, b = runs
    return {f: (b.get(f, 0) - a.get(f, 0)) / (n2 - n1) for f in set(a) | set(b)}
cur, base = per_fn("current"), per_fn("baseline")
# By crate first (robust to functions renamed, moved or inlined differently), then by
# function.
def crate(f):
    f = f.lstrip("<&*( ")
    if "::" in f:
        return f.split("::", 1)[0]
    return f if f in ("malloc", "free", "realloc", "calloc", "__memcpy_avx_unaligned_erms", "__memmove_avx_unaligned_erms", "__memset_avx2_unaligned_erms") else "other (libc, kernel stubs)"
def by_crate(d):
    out = {}
    for f, v in d.items():
        out[crate(f)] = out.get(crate(f), 0) + v
    return out
cc, bc = by_crate(cur), by_crate(base)
rows = sorted(((cc.get(k, 0) - bc.get(k, 0), k) for k in set(cc) | set(bc)), key=lambda t: -abs(t[0]))
print(f"| {'Ir/req now':>10} | {'before':>10} | {'change':>10} | crate")
print("|------------|------------|------------|------")
for d, k in rows[:12]:
    print(f"| {cc.get(k, 0):10.0f} | {bc.get(k, 0):10.0f} | {d:+10.0f} | {k}")
print()
diff = sorted(((cur.get(f, 0) - base.get(f, 0), f) for f in set(cur) | set(base)), key=lambda t: -abs(t[0]))
print(f"| {'Ir/req now':>10} | {'before':>10} | {'change':>10} | function")
print("|------------|------------|------------|---------")
for d, f in diff[:20]:
    if abs(d) < 1:
        break
    print(f"| {cur.get(f, 0):10.0f} | {base.get(f, 0):10.0f} | {d:+10.0f} | {f[:150]}")
PY
  done
fi
# Where one request's instructions go, current build: the inclusive cost of the tasks and
# futures a proxied request runs through, (N2 - N1) / (N2 - N1) per request like the totals.
for route in $routes; do
  for n in "$n1" "$n2"; do
    callgrind_annotate --threshold=100 --inclusive=yes "$work/current/callgrind.$route.$n" > "$work/current/inclusive.$route.$n" 2>/dev/null
  done
  echo
  echo "$route route, current build: where a request's instructions go (inclusive, per request)"
  python3 - "$work" "$route" "$n1" "$n2" "$(grep "^current|$route|" "$work/results.txt" | cut -d'|' -f5)" <<'PY'
import sys
sys.path.insert(0, "bench")
from annotate import functions
work, route, n1, n2, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def inclusive(n):
    d = {}
    for fn, ir in functions(f"{work}/current/inclusive.{route}.{n}"):
        d[fn] = max(d.get(fn, 0), ir)
    return d
a, b = inclusive(n1), inclusive(n2)
per = lambda f: (b.get(f, 0) - a.get(f, 0)) / (n2 - n1)
server = per("portcullis::listener::connection::run_http::{{closure}}")
request = per("portcullis::listener::connection::Responder<H>::respond::{{closure}}")
inner = per("portcullis::pipeline::Pipeline::handle_inner::{{closure}}")
fwd = per("portcullis::pipeline::forward::forward::{{closure}}")
client = per("portcullis::upstream::pool::Pool::start::{{closure}}::{{closure}}")
rows = [
    ("the connection: its HTTP/1 server (the gateway's own, or hyper's once handed over), without the request's future (the response is written here)", server - request),
    ("the request's future: before the phases and after (ids, context, metrics, security headers)", request - inner),
    ("the phases up to forwarding (normalize, authenticate, authorize, rate limit)", inner - fwd),
    ("forwarding: header rewrite, upstream URI, the pool, the exchange up to the response head (in-task for a request without a body)", fwd),
    ("hyper's client connection task (requests with a body, https:// upstreams)", client),
    ("the rest: the runtime (epoll, timers, scheduling) and background tasks", total - server - client),
]
print(f"| {'Ir/req':>8} | part")
print("|----------|-----")
for name, v in rows:
    print(f"| {v:8.0f} | {name}")
print(f"| {total:8.0f} | the whole request")
PY
done
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  for d in current baseline nginx-proxy; do [ ! -d "$work/$d" ] || cp -r "$work/$d" "$KEEP/"; done
fi
