#!/usr/bin/env bash
# The gateway built with profile-guided optimization: an instrumented build serves a
# training load in front of the demo shop, and the release build is made again with the
# profile it wrote, so the compiler lays out and inlines the code the way requests use it
# (the hot path together, the rest out of its way).
#
# The training load is the demo's own (the shop, the shipped policies, plus a public route
# without a field list and an audited, rate-limited one), over plain HTTP, TLS and HTTP/2:
# public routes, a route with a role and ownership (bearer token and cookie session), a
# field list on the way in and on the way out, the audit trail, a route rate limit,
# forward-auth decisions (/auth/verify), and refusals (no token, someone else's record,
# an unknown path).
# It is not the benchmark's configuration: bench/compare.sh measures the result against
# its own backend, policies and ports.
#
# Usage: packaging/pgo.sh [CARGO_ARGS...]   e.g. packaging/pgo.sh --locked --no-default-features
#   (CARGO_ARGS go to both builds, which must match for the profile to apply; the
#   training's shop is the `upstream-demo` binary, built apart and not instrumented.)
# Output: target/pgo/portcullis. Work files: target/pgo-gen (the instrumented build),
# target/pgo/profiles. Needs rustup's llvm-tools (added if missing), h2load and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | awk '/^host:/ {print $2}')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
[ -x "$profdata" ] || rustup component add llvm-tools >/dev/null
[ -x "$profdata" ] || { echo "llvm-profdata not found at $profdata (rustup component add llvm-tools)" >&2; exit 1; }

out=$PWD/target/pgo
profiles=$out/profiles
rm -rf "$profiles"
mkdir -p "$profiles"

echo "1/3 the instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="-Cprofile-generate=$profiles" cargo build --release --quiet --bin portcullis --target-dir target/pgo-gen "$@"
cargo build --release --quiet -p upstream-demo
gw=target/pgo-gen/release/portcullis

echo "2/3 the training load" >&2
# The load scripts' work directory, cleanup and shipped configuration.
source bench/common.sh
mkdir -p "$work/policies"
cp policies/*.toml "$work/policies/"
cat > "$work/policies/00-training.toml" <<'TOML'
upstream = "shop"
[[route]]
name = "a product, whole"
methods = ["GET"]
path = "/api/products/{id}"
public = true
[[route]]
name = "own purchases, audited and rate-limited"
methods = ["GET"]
path = "/api/customers/{id}/orders"
roles = ["customer"]
owner = "id"
audit = true
rate_limit = "1000000/sec"
TOML
shipped_config 28443 28081 1000/sec \
  -e 's|^# plain_listen = .*|plain_listen = "127.0.0.1:28080"|' \
  -e 's|^public_url = .*|public_url = "https://localhost:28443"|' \
  -e "s|^policies = .*|policies = \"$work/policies\"|" > "$work/gateway.toml"
password='Training!Passw0rd7'
id=$(echo "$password" | $gw --config "$work/gateway.toml" user add --email tester@example.com --role customer --password-stdin | awk '/^id:/ {print $2}')
RUST_LOG=warn target/release/upstream-demo --listen 127.0.0.1:28081 >/dev/null & pids+=($!)
# In a session of its own, as every load script starts a server (see bench/compare.sh).
RUST_LOG=warn setsid $gw serve --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 & gw_pid=$!; pids+=("$gw_pid")
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:28080/healthz && break; sleep 0.1; done
curl -sf -o /dev/null http://127.0.0.1:28080/healthz || { echo "the instrumented gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }

token=$(curl -sk https://127.0.0.1:28443/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"tester@example.com\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
[ -n "$token" ] || { echo "the training login failed" >&2; exit 1; }
curl -sk -o /dev/null -X PUT "https://127.0.0.1:28443/api/customers/$id" -H "Authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"Trainer","address":"1 Loop","phone":"0"}'
source bench/form_login.sh
cookie=$(form_session 28443 "$password" "$work")

bearer=(-H "Authorization: Bearer $token")
load() { h2load "$@" >"$work/h2load.txt" 2>&1 || { echo "training load failed: h2load $*" >&2; cat "$work/h2load.txt" >&2; exit 1; }; }
for base in http://127.0.0.1:28080 https://127.0.0.1:28443; do
  load --h1 -n 40000 -c 32 "$base/api/products/3"
  load --h1 -n 20000 -c 32 "${bearer[@]}" "$base/api/customers/$id"
  load --h1 -n 5000 -c 16 "$base/api/products"
  load --h1 -n 2000 -c 8 "$base/api/customers/$id"
  load --h1 -n 2000 -c 8 "${bearer[@]}" "$base/api/customers/not-$id"
  load --h1 -n 2000 -c 8 "$base/nowhere"
  load --h1 -n 5000 -c 16 "${bearer[@]}" "$base/api/customers/$id/orders"
  load --h1 -n 5000 -c 16 "${bearer[@]}" -H 'X-Forwarded-Method: GET' -H "X-Forwarded-Uri: /api/customers/$id" \
    "$base/auth/verify"
done
load --h1 -n 10000 -c 32 -H "Cookie: __Host-portcullis=$cookie" "https://127.0.0.1:28443/api/customers/$id"
load -n 20000 -c 4 -m 32 "https://127.0.0.1:28443/api/products/3"
load -n 10000 -c 4 -m 32 "${bearer[@]}" "https://127.0.0.1:28443/api/customers/$id"
# Request bodies through a field list: the customer's own particulars, 1,000 PUTs on one
# connection over each listener (curl, the URLs in turn); each must be answered 200.
for base in http://127.0.0.1:28080 https://127.0.0.1:28443; do
  ok=$(curl -sk -X PUT -H 'content-type: application/json' "${bearer[@]}" \
    -d '{"name":"Trainer","address":"2 Loop","phone":"1"}' -w '%{stderr}%{http_code}\n' \
    "$base/api/customers/$id?n=[1-1000]" 2>&1 >/dev/null | grep -c '^200$' || true)
  [ "$ok" = 1000 ] || { echo "training: $ok of 1000 PUTs to $base answered 200" >&2; exit 1; }
done
# The profile is written when the gateway exits: a graceful stop.
kill -TERM "$gw_pid"
wait "$gw_pid" || true
ls "$profiles"/*.profraw >/dev/null 2>&1 || { echo "the instrumented gateway wrote no profile" >&2; exit 1; }

echo "3/3 the optimized build (target/pgo/portcullis)" >&2
"$profdata" merge -o "$profiles/merged.profdata" "$profiles"/*.profraw
RUSTFLAGS="-Cprofile-use=$profiles/merged.profdata" cargo build --release --quiet --bin portcullis \
  --target-dir target/pgo-use "$@"
cp target/pgo-use/release/portcullis "$out/portcullis"
echo "$out/portcullis"
