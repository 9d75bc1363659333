#!/usr/bin/env bash
# A 10-second PostgreSQL outage under load, on loopback: one gateway with
# `[store] backend = "postgres"` in front of the demo shop, 30 seconds of traffic, and the
# database stopped from second 10 to second 20.
#   - wrk, 32 connections over TLS, on a route that needs a role (token verified
#     locally: nothing from the database);
#   - probes beside it (Python, 4 connections): a rate-limited route (its budget is in the
#     database) and password logins, each answer's status and time recorded.
# Prints, for before / during / after the outage (by when the answer came), what each kind of request got: 200s,
# 503s, anything else, connection errors and the slowest answer; and how long after the
# database came back the first login and the first rate-limited request succeeded.
# Usage: bench/outage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --workspace --quiet

source bench/common.sh
source bench/postgres.sh
trap 'cleanup; postgres_down' EXIT
postgres_up 18432

mkdir -p "$work/policies"
cat > "$work/policies/outage.toml" <<TOML
upstream = "shop"
[[route]]
name = "catalog"
methods = ["GET"]
path = "/api/products"
roles = ["customer"]
[[route]]
name = "product"
methods = ["GET"]
path = "/api/products/{id}"
roles = ["customer"]
rate_limit = "1000000/sec"
TOML
cat > "$work/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:18443"
public_url = "https://localhost:18443"
data_dir = "$work/data"
policies = "$work/policies"
[upstreams]
shop = "http://127.0.0.1:18481"
[store]
backend = "postgres"
url = "postgres://portcullis@127.0.0.1:18432/portcullis"
connect_timeout = "1s"
[rate_limit]
auth_per_ip = "1000000/sec"
[tokens]
access_ttl = "1h"
[roles]
customer = { description = "outage" }
TOML
password='Outage!Passw0rd7'
gw=target/release/portcullis
echo "$password" | $gw --config "$work/gateway.toml" user add --email tester@example.com --role customer --password-stdin >/dev/null
RUST_LOG=warn target/release/upstream-demo --listen 127.0.0.1:18481 >/dev/null 2>&1 & pids+=($!)
# In a session of its own, as every load script starts a server (see bench/compare.sh).
RUST_LOG=warn setsid $gw serve --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sk -o /dev/null https://127.0.0.1:18443/healthz && break; sleep 0.1; done
token=$(curl -sk https://127.0.0.1:18443/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
code=$(curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:18443/api/products -H "Authorization: Bearer $token")
[ "$code" = 200 ] || { echo "the token does not pass: $code" >&2; exit 1; }

# The outage: the database stops at second 10 and starts again at second 20.
# The phases are cut when the stop begins and when the start has finished.
( sleep 10; date +%s.%N > "$work/down"; postgres_stop
  sleep 10; postgres_start; date +%s.%N > "$work/up" ) &
outage=$!
date +%s.%N > "$work/t0"
wrk -t1 -c32 -d30s -H "Authorization: Bearer $token" https://127.0.0.1:18443/api/products > "$work/wrk.txt" &
load=$!
python3 - "$token" "$password" "$work" <<'PY'
import http.client, json, ssl, sys, threading, time
token, password, work = sys.argv[1:4]
ctx = ssl._create_unverified_context()
t0 = float(open(f"{work}/t0").read())
results = []  # (kind, start, status or error, seconds)
lock = threading.Lock()

def probe(kind):
    conn = None
    while time.time() - t0 < 30:
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", 18443, context=ctx, timeout=10)
        start = time.time()
        try:
            if kind == "login":
                body = json.dumps({"email": "tester@example.com", "password": password})
                conn.request("POST", "/auth/login", body, {"content-type": "application/json"})
            else:
                conn.request("GET", "/api/products/3", headers={"authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            outcome = resp.status
            if resp.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
        except Exception as e:  # a reset, a timeout: an error, whatever it is
            outcome = type(e).__name__
            conn.close(); conn = None
        with lock:
            results.append((kind, start, outcome, time.time() - start))
        if outcome == 503:
            time.sleep(0.05)

threads = [threading.Thread(target=probe, args=(k,)) for k in ("login", "login", "limited", "limited")]
for t in threads: t.start()
for t in threads: t.join()
down = float(open(f"{work}/down").read())
up = float(open(f"{work}/up").read())
def phase(s):
    return "before" if s < down else ("during" if s < up else "after")
print(f"database down at +{down - t0:.1f} s, up again at +{up - t0:.1f} s")
print("| requests | phase | 200 | 503 | other status | errors | slowest ms |")
print("|---|---|---:|---:|---:|---:|---:|")
for kind, name in (("login", "logins"), ("limited", "rate-limited route")):
    for ph in ("before", "during", "after"):
        # By when the answer came: one that came before the stop began was not touched by it.
        rs = [r for r in results if r[0] == kind and phase(r[1] + r[3]) == ph]
        ok = sum(1 for r in rs if r[2] == 200)
        busy = sum(1 for r in rs if r[2] == 503)
        other = sorted({r[2] for r in rs if isinstance(r[2], int) and r[2] not in (200, 503)})
        n_other = sum(1 for r in rs if isinstance(r[2], int) and r[2] not in (200, 503))
        errors = sum(1 for r in rs if not isinstance(r[2], int))
        slow = max((r[3] for r in rs), default=0) * 1000
        print(f"| {name} | {ph} | {ok} | {busy} | {n_other}{' ' + str(other) if other else ''} | {errors} | {slow:.0f} |")
for kind, name in (("login", "login"), ("limited", "rate-limited request")):
    firsts = [r[1] for r in results if r[0] == kind and r[1] >= up and r[2] == 200]
    print(f"first {name} served {min(firsts) - up:.2f} s after the database was back" if firsts else f"no {name} served after the database was back")
PY
wait $load
wait $outage
echo
echo "wrk, role route (token checked locally), 32 connections over TLS, the whole 30 s:"
grep -E "Requests/sec|requests in|Non-2xx|Socket errors|Latency" "$work/wrk.txt" || true
grep -qE "Non-2xx|Socket errors" "$work/wrk.txt" || echo "  no non-2xx answer, no socket error"
echo "gateway log: $(wc -l < "$work/gateway.log") lines, $(grep -c ERROR "$work/gateway.log" || true) at ERROR:"
grep ERROR "$work/gateway.log" | cut -c1-300 || true
echo "audit chain after the outage: $($gw --config "$work/gateway.toml" audit verify 2>&1 | tail -1)"
