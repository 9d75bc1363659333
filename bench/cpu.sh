#!/usr/bin/env bash
# CPU time a request costs, user and system apart, at 32 and at 256 connections, pinned:
# an nginx backend (one worker, a fixed ~200-byte JSON), an nginx plain proxy (one worker,
# upstream keep-alive) and one or more gateway builds on the public route (plain HTTP),
# all on CPU 0; wrk -t1 on CPU 1 for DURATION a row. For each row, from /proc/PID/stat of
# the proxy's processes and of the backend's, before and after: microseconds of user and
# of system time per request. The instructions a request runs do not grow with the
# connections (bench/callgrind.sh with CONNS=256 counts slightly fewer); what grows is the
# time they take, and this shows whose, and how much against nginx's. A second nginx row
# sends the backend the forwarded fields the gateway sends (X-Forwarded-For, -Proto, -Host,
# X-Request-Id), and each row counts the context switches on CPU 0 per 1,000 requests:
# the proxy's involuntary ones (preempted, mostly by the backend it woke) and the
# backend's voluntary ones (it ran out of requests and slept).
# Usage: bench/cpu.sh [DURATION] [ROUNDS]   (defaults 8s, 2). BINS="PATH..." measures
# those gateway builds (default target/release/portcullis, built unless NO_BUILD=1).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-8s}
rounds=${2:-2}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[ -n "${BINS:-}" ] || [ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bin portcullis --quiet
read -r -a bins <<< "${BINS:-target/release/portcullis}"
source bench/common.sh
cleanup_all() { for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; cleanup; }
trap cleanup_all EXIT

body='{"id":3,"name":"Yoga mat","category":"fitness","price":29.99,"stock":60,"description":"A 6 mm non-slip mat for yoga and pilates, with a carry strap.","tags":["yoga","fitness"]}'
mkdir -p "$work/tmp" "$work/policies"
common="access_log off; keepalive_requests 1000000; client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp; uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;"
cat > "$work/backend.conf" <<NGINX
worker_processes 1; pid $work/backend.pid; error_log $work/backend.log; events { worker_connections 4096; }
http { $common server { listen 127.0.0.1:19101; location / { default_type application/json; return 200 '$body'; } } }
NGINX
cat > "$work/proxy.conf" <<NGINX
worker_processes 1; pid $work/proxy.pid; error_log $work/proxy.log; events { worker_connections 4096; }
http { $common upstream backend { server 127.0.0.1:19101; keepalive 256; }
  server { listen 127.0.0.1:19102; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:19103; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$http_host; proxy_set_header X-Request-Id \$request_id; } } }
NGINX
taskset -c 0 nginx -c "$work/backend.conf" -p "$work"
taskset -c 0 nginx -c "$work/proxy.conf" -p "$work"
cat > "$work/policies/bench.toml" <<TOML
upstream = "backend"
[[route]]
name = "public"
methods = ["GET"]
path = "/api/products/{id}"
public = true
TOML
i=0
for bin in "${bins[@]}"; do
  i=$((i + 1))
  cat > "$work/gw$i.toml" <<TOML
[server]
listen = "127.0.0.1:$((19120 + i))"
plain_listen = "127.0.0.1:$((19110 + i))"
public_url = "https://localhost:$((19120 + i))"
data_dir = "$work/data$i"
policies = "$work/policies"
[upstreams]
backend = "http://127.0.0.1:19101"
TOML
  # In a session of its own, as nginx's daemons are (see bench/compare.sh on autogroups).
  RUST_LOG=warn setsid taskset -c 0 "$bin" serve --config "$work/gw$i.toml" > "$work/gw$i.log" 2>&1 &
  pids+=($!)
done
url_of() { echo "http://127.0.0.1:$1/api/products/3"; }
for port in 19102 19103 $(seq 19111 $((19110 + i))); do
  for _ in $(seq 100); do curl -s -o /dev/null "$(url_of "$port")" && break; sleep 0.1; done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$(url_of "$port")")" = 200 ] \
    || { echo "$(url_of "$port") does not answer 200" >&2; cat "$work"/*.log >&2; exit 1; }
done

# ticks PID...: user and system clock ticks of these processes, summed.
ticks() { for p in "$@"; do awk '{print $14, $15}' "/proc/$p/stat"; done | awk '{u += $1; s += $2} END {print u + 0, s + 0}'; }
group() { echo "$1" $(pgrep -P "$1" || true); }
backend=$(group "$(cat "$work/backend.pid")")
# switches PIDS BACKEND: the involuntary context switches of PIDS' threads and the voluntary
# ones of BACKEND's, summed.
switches() {
  local invol vol
  invol=$(for p in $1; do cat /proc/"$p"/task/*/status; done | awk '/^nonvoluntary_ctxt_switches/ {n += $2} END {print n + 0}')
  vol=$(for p in $2; do cat /proc/"$p"/task/*/status; done | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}')
  echo "$invol $vol"
}
hz=$(getconf CLK_TCK)
# row NAME PORT PIDS: one wrk run per connection count, the CPU per request of PIDS and of
# the backend; every answer must be 2xx.
row() {
  local name=$1 port=$2 pids=$3 c out
  for c in 32 256; do
    read -r u0 s0 < <(ticks $pids); read -r bu0 bs0 < <(ticks $backend); read -r i0 v0 < <(switches "$pids" "$backend")
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"$duration" "$(url_of "$port")")
    read -r u1 s1 < <(ticks $pids); read -r bu1 bs1 < <(ticks $backend); read -r i1 v1 < <(switches "$pids" "$backend")
    ! echo "$out" | grep -q Non-2xx || { echo "$name: answers other than 2xx" >&2; echo "$out" >&2; exit 1; }
    echo "$out" | awk -v name="$name" -v c="$c" -v hz="$hz" -v u=$((u1 - u0)) -v s=$((s1 - s0)) \
      -v bu=$((bu1 - bu0)) -v bs=$((bs1 - bs0)) -v i=$((i1 - i0)) -v v=$((v1 - v0)) '
      /requests in/ { n = $1 } /Requests\/sec/ { r = $2 }
      END { f = 1e6 / hz / n; printf "| %-28s | %4d | %8.0f | %6.2f | %6.2f | %6.2f | %6.2f | %5.0f | %5.0f |\n", name, c, r, u * f, s * f, bu * f, bs * f, i * 1000 / n, v * 1000 / n }'
  done
}
echo "CPU per request, pinned (servers and backend on CPU 0, wrk -t1 on CPU 1), plain HTTP, $duration a row; $(nproc) cores, $(date -u +%F)"
echo
echo "| proxy                        | conns |   req/s | user µs | sys µs | backend user µs | backend sys µs | proxy preempted /1000 | backend slept /1000 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq "$rounds"); do
  row "nginx proxy (round $round)" 19102 "$(group "$(cat "$work/proxy.pid")")"
  row "nginx, forwarded (round $round)" 19103 "$(group "$(cat "$work/proxy.pid")")"
  for j in $(seq "$i"); do row "${bins[$((j - 1))]##*/} (round $round)" $((19110 + j)) "${pids[$((j - 1))]}"; done
done
