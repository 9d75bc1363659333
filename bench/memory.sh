#!/usr/bin/env bash
# Resident memory of the gateway, in one run on loopback:
#   at start; while CONNS keep-alive TLS connections sit idle (each has made one proxied
#   request, so the upstream pool is in use too); then during SOAK of steady load on a
#   customer's own record (role and ownership; wrk -t1 -c32, bearer token, TLS), sampled
#   every 30 s, with
#   the growth from the first sample to the last.
# Usage: bench/memory.sh [CONNS] [SOAK]   (defaults: 1000, 300s)
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-1000}
soak=${2:-300s}
soak_s=$(awk -v d="$soak" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release --workspace --quiet
ulimit -n 65536 2>/dev/null || true

# The shipped configuration, on its own ports and data directory; idle connections are
# kept for 5 minutes so none is closed while they are counted.
source bench/common.sh
shipped_config 17443 17081 1000/sec -e 's|^\[limits\]|[limits]\nheader_read_timeout = "5m"\nidle_timeout = "5m"|' > "$work/gateway.toml"
gw=target/release/portcullis
password='Memory!Passw0rd7'
id=$(echo "$password" | $gw --config "$work/gateway.toml" user add --email tester@example.com --role customer --password-stdin | awk '/^id:/ {print $2}')
RUST_LOG=warn target/release/upstream-demo --listen 127.0.0.1:17081 >/dev/null & pids+=($!)
RUST_LOG=warn $gw serve --config "$work/gateway.toml" >/dev/null & gw_pid=$!; pids+=($gw_pid)
for _ in $(seq 100); do curl -sk -o /dev/null https://127.0.0.1:17443/healthz && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$gw_pid/status"; }

echo "at start: $(rss) MiB"

# Open the idle connections; the client prints "open" once all of them are, then waits
# for its stdin to close.
mkfifo "$work/hold"
python3 - "$conns" "$work/hold" <<'PY' &
import socket, ssl, sys
n, hold = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
socks = []
for _ in range(n):
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 17443)), server_hostname="localhost")
    t.sendall(b"GET /api/products/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = t.recv(65536)
    if b" 200 " not in head.split(b"\r\n")[0]:
        sys.exit(f"unexpected answer: {head[:80]!r}")
    socks.append(t)
print("open", flush=True)
open(hold).read()
PY
client=$!; pids+=($client)
exec 3>"$work/hold"
for _ in $(seq 600); do
  established=$(ss -Htn state established "( sport = :17443 )" | wc -l)
  [ "$established" -ge "$conns" ] && break
  sleep 0.1
done
sleep 1
echo "with $established idle TLS connections: $(rss) MiB"
exec 3>&-
wait "$client" || true
sleep 1
echo "after they closed: $(rss) MiB"

token=$(curl -sk https://127.0.0.1:17443/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
url="https://127.0.0.1:17443/api/customers/$id"
curl -sk -o /dev/null -X PUT "$url" -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"Memory","address":"1 Loop","phone":"0"}'
code=$(curl -sk -o /dev/null -w '%{http_code}' "$url" -H "Authorization: Bearer $token")
[ "$code" = 200 ] || { echo "the role route answered $code" >&2; exit 1; }

wrk -t1 -c32 -d"$soak" -H "Authorization: Bearer $token" "$url" > "$work/wrk.txt" &
load=$!; pids+=($load)
samples=()
for ((t = 30; t <= soak_s; t += 30)); do
  sleep 30
  samples+=("$(rss)")
  echo "  after ${t}s of load: ${samples[-1]} MiB"
done
wait "$load"
grep -q "Non-2xx" "$work/wrk.txt" && { echo "non-2xx answers under load" >&2; grep Non-2xx "$work/wrk.txt" >&2; exit 1; }
echo "steady load: $(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt") req/s over $soak"
echo "growth from the first sample to the last: $(awk -v a="${samples[0]}" -v b="${samples[-1]}" 'BEGIN { printf "%+.1f MiB", b - a }')"
