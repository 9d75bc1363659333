#!/usr/bin/env bash
# A first load test: a public route of the demo shop, directly and through the gateway
# (plain HTTP and TLS), in one run on loopback with the same wrk settings.
# Usage: bench/quick.sh [DURATION] [CONNECTIONS]   (defaults 10s, 32)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --workspace --quiet

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

sed -e 's|^# plain_listen = .*|plain_listen = "127.0.0.1:18080"|' \
    -e 's|^listen = .*|listen = "127.0.0.1:18443"|' \
    -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
    -e "s|^policies = .*|policies = \"$PWD/policies\"|" \
    -e 's|^shop = .*|shop = "http://127.0.0.1:18081"|' \
    -e "s|^outbox = .*|outbox = \"$work/outbox\"|" gateway.toml > "$work/gateway.toml"

RUST_LOG=warn target/release/upstream-demo --listen 127.0.0.1:18081 >/dev/null & pids+=($!)
RUST_LOG=warn target/release/portcullis serve --config "$work/gateway.toml" >/dev/null & pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done

run() {
  local name=$1 url=$2
  local out; out=$(wrk -t1 -c"$conns" -d"$duration" --latency "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-34s %12s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
}
printf '%-34s %12s %10s %10s\n' "target (wrk -t1 -c$conns -d$duration)" "req/s" "p50" "p99"
run "shop directly (http)" http://127.0.0.1:18081/api/products/3
run "gateway, public route (http)" http://127.0.0.1:18080/api/products/3
run "gateway, public route (https)" https://127.0.0.1:18443/api/products/3
