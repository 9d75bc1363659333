#!/usr/bin/env bash
# Load test on loopback, one run, same wrk settings for every row:
#   the demo shop directly; a public route through the gateway (plain HTTP and TLS);
#   a route that needs a role and ownership, with a bearer token (TLS);
#   that route again while 32 other connections log in continuously (argon2 at full cost).
# Usage: bench/quick.sh [DURATION] [CONNECTIONS]   (defaults 10s, 32)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --workspace --quiet

source bench/common.sh
shipped_config 18443 18081 1000000/sec -e 's|^# plain_listen = .*|plain_listen = "127.0.0.1:18080"|' > "$work/gateway.toml"

gw=target/release/portcullis
password='Load!Passw0rd7'
id=$(echo "$password" | $gw --config "$work/gateway.toml" user add --email tester@example.com --role customer --password-stdin | awk '/^id:/ {print $2}')

# A second gateway, identical but for one policy file that audits every request to a
# product (it sorts first, so its route is the one that allows the request).
mkdir -p "$work/audited-policies"
cp policies/*.toml "$work/audited-policies/"
cat > "$work/audited-policies/00-audited.toml" <<TOML
upstream = "shop"
[[route]]
name = "browse a product (audited)"
methods = ["GET"]
path = "/api/products/{id}"
public = true
audit = true
TOML
sed -e 's|127.0.0.1:18080|127.0.0.1:18090|' -e 's|127.0.0.1:18443|127.0.0.1:18453|' \
    -e "s|$work/data|$work/data-audited|" -e "s|$PWD/policies|$work/audited-policies|" \
    "$work/gateway.toml" > "$work/gateway-audited.toml"

RUST_LOG=warn target/release/upstream-demo --listen 127.0.0.1:18081 >/dev/null & pids+=($!)
# In sessions of their own, as a daemon is (see bench/compare.sh on autogroups).
RUST_LOG=warn setsid $gw serve --config "$work/gateway.toml" >/dev/null & pids+=($!)
RUST_LOG=warn setsid $gw serve --config "$work/gateway-audited.toml" >/dev/null & pids+=($!)
for port in 18080 18090; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done

login_body="{\"email\":\"tester@example.com\",\"password\":\"$password\"}"
token=$(curl -sk https://127.0.0.1:18443/auth/login -H 'content-type: application/json' -d "$login_body" \
  | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -sk -o /dev/null -X PUT "https://127.0.0.1:18443/api/customers/$id" -H "Authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"Bench","address":"1 Loop","phone":"0"}'
# 32 accounts for the login load, so logins hash in parallel rather than queue on one account.
for i in $(seq 0 31); do
  echo "$password" | $gw --config "$work/gateway.toml" user add --email "load$i@example.com" --role customer --password-stdin >/dev/null
done
cat > "$work/login.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"email":"load' .. (counter % 32) .. '@example.com","password":"$password"}'
  return wrk.format("POST", "/auth/login", {["Content-Type"] = "application/json"}, body)
end
LUA

run() {
  local name=$1; shift
  local out; out=$(wrk -t1 -c"$conns" -d"$duration" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-46s %12s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
}
auth=(-H "Authorization: Bearer $token")
printf '%-46s %12s %10s %10s\n' "target (wrk -t1 -c$conns -d$duration)" "req/s" "p50" "p99"
run "shop directly (http)" http://127.0.0.1:18081/api/products/3
run "gateway, public route (http)" http://127.0.0.1:18080/api/products/3
run "gateway, public route (https)" https://127.0.0.1:18443/api/products/3
run "gateway, public route, audit = true (https)" https://127.0.0.1:18453/api/products/3
run "gateway, customer's own record (https)" "${auth[@]}" "https://127.0.0.1:18443/api/customers/$id"
wrk -t1 -c32 -d"$duration" -s "$work/login.lua" https://127.0.0.1:18443/auth/login > "$work/logins.txt" &
sleep 1
run "  same, while 32 clients log in" "${auth[@]}" "https://127.0.0.1:18443/api/customers/$id"
wait $!
logins=$(awk '/Requests\/sec/ {print $2}' "$work/logins.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/logins.txt")
timeouts=$(awk '/Socket errors/ { for (i = 1; i <= NF; i++) if ($i == "timeout") print $(i + 1) }' "$work/logins.txt")
echo "logins during that run: $logins/s (non-2xx: ${non2xx:-0}, client timeouts: ${timeouts:-0})"
records=$($gw --config "$work/gateway-audited.toml" audit list --event request | wc -l)
overflow=$($gw --config "$work/gateway-audited.toml" audit list --event audit_overflow | wc -l)
echo "audited gateway: $records request records written, $overflow overflow records"
$gw --config "$work/gateway-audited.toml" audit verify
