#!/usr/bin/env bash
# Where the gateway's time goes per thread, at 32 and at 256 connections, in one run on
# loopback: one release gateway in front of an nginx backend (a fixed ~200-byte JSON), the
# role route with a bearer token, wrk -t1 for DURATION per row, plain HTTP and TLS.
# For each row and each gateway thread (the connection workers `portcullis-N`, the main
# runtime's threads, the audit writer...), from /proc/PID/task/TID before and after:
#   cpu ms      user+system time the thread ran (schedstat field 1);
#   runq ms     time it sat runnable on a run queue, waiting for a core (schedstat field 2);
#   slices      times it was scheduled in (schedstat field 3);
# and per request: the gateway's CPU µs, its run-queue µs, and voluntary/involuntary context
# switches. Then `strace -c -f` over a short run at 32 connections per transport: system
# calls per request, by call.
# Usage: bench/threads.sh [DURATION]   (default 10s). PORTCULLIS_BIN=PATH, NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --quiet
source bench/common.sh
gw=${PORTCULLIS_BIN:-target/release/portcullis}
body='{"id":3,"name":"Walnut desk","price":249.0,"category":"furniture","stock":7,"sku":"WD-3003","description":"A desk in solid walnut, oiled, with one drawer."}'

mkdir -p "$work/nginx-tmp" "$work/policies"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
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
  server { listen 127.0.0.1:19701; location / { default_type application/json; return 200 '$body'; } }
}
NGINX
nginx -c "$work/nginx.conf" -p "$work"
cleanup_all() { kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; cleanup; }
trap cleanup_all EXIT

cat > "$work/policies/bench.toml" <<TOML
upstream = "backend"
[[route]]
name = "orders"
methods = ["GET"]
path = "/api/orders"
roles = ["customer"]
TOML
cat > "$work/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:19743"
plain_listen = "127.0.0.1:19780"
public_url = "https://localhost:19743"
data_dir = "$work/data"
policies = "$work/policies"
[upstreams]
backend = "http://127.0.0.1:19701"
[rate_limit]
auth_per_ip = "1000/sec"
[tokens]
access_ttl = "1h"
[roles]
customer = { description = "bench" }
TOML
password='Bench!Passw0rd7'
echo "$password" | $gw --config "$work/gateway.toml" user add --email tester@example.com --role customer --password-stdin >/dev/null
# In a session of its own, as a daemon is (see bench/compare.sh on autogroups).
RUST_LOG=warn setsid $gw serve --config "$work/gateway.toml" >"$work/gw.log" 2>&1 & gpid=$!
pids+=($gpid)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:19780/healthz && break; sleep 0.1; done
token=$(curl -sk https://127.0.0.1:19743/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]*)".*/\1/')
for url in http://127.0.0.1:19780/api/orders https://127.0.0.1:19743/api/orders; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" "$url")
  [ "$code" = 200 ] || { echo "check failed: $url answered $code" >&2; exit 1; }
done

# snapshot FILE: one line per thread: tid name cpu_ns runq_ns slices vol invol
snapshot() {
  for t in /proc/$gpid/task/*; do
    local tid=${t##*/} name stat vol invol
    name=$(cat "$t/comm" 2>/dev/null) || continue
    stat=$(cat "$t/schedstat" 2>/dev/null) || continue
    vol=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null)
    invol=$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null)
    echo "$tid $name $stat ${vol:-0} ${invol:-0}"
  done > "$1"
}

echo "threads of one gateway ($(nproc) cores, $(date -u +%F)), role route + bearer token, wrk -t1 $duration"
for transport in http tls; do
  url=http://127.0.0.1:19780/api/orders
  [ $transport = tls ] && url=https://127.0.0.1:19743/api/orders
  for c in 32 256; do
    snapshot "$work/before"
    out=$(wrk -t1 -c"$c" -d"$duration" -H "authorization: Bearer $token" "$url")
    snapshot "$work/after"
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo
    echo "== $transport, c$c: $reqs requests, $rate req/s"
    printf '%-18s %10s %10s %10s %12s %10s\n' thread "cpu ms" "runq ms" slices "vol cs" "invol cs"
    # Fields after join: tid, then name cpu runq slices vol invol before ($2-$7) and after ($8-$13)
    LC_ALL=C join <(LC_ALL=C sort "$work/before") <(LC_ALL=C sort "$work/after") | awk -v reqs="$reqs" '
      {
        cpu = ($9 - $3) / 1e6; rq = ($10 - $4) / 1e6; sl = $11 - $5; vol = $12 - $6; inv = $13 - $7
        if (cpu < 1 && rq < 1) next
        printf "%-18s %10.0f %10.0f %10d %12d %10d\n", $2, cpu, rq, sl, vol, inv
        tc += cpu; tr += rq; tv += vol; ti += inv
      }
      END {
        printf "per request: %.2f µs CPU, %.2f µs on a run queue, %.3f voluntary and %.3f involuntary switches\n",
          tc * 1000 / reqs, tr * 1000 / reqs, tv / reqs, ti / reqs
      }'
  done
done

echo
echo "== system calls per request (strace -c -f, wrk -c32 for 3 s; strace slows the gateway, the counts per request stand)"
for transport in http tls; do
  url=http://127.0.0.1:19780/api/orders
  [ $transport = tls ] && url=https://127.0.0.1:19743/api/orders
  strace -c -f -p "$gpid" -o "$work/strace-$transport" 2>/dev/null &
  spid=$!
  sleep 1
  reqs=$(wrk -t1 -c32 -d3s -H "authorization: Bearer $token" "$url" | awk '/requests in/ {print $1}')
  sleep 0.5
  kill -INT $spid; wait $spid 2>/dev/null || true
  echo "-- $transport: $reqs requests"
  awk -v reqs="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $4 + 0 > 0 { printf "%-16s %8.3f per request\n", $NF, $4 / reqs }' \
    "$work/strace-$transport" | sort -k2 -nr | head -12
done
