# Shared by the load scripts (sourced from the repository root): a work directory and
# the processes started into `pids`, both cleaned up on exit; and the shipped
# gateway.toml rewritten for a run on loopback.

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shipped_config TLS_PORT SHOP_PORT AUTH_RATE [SED_ARGS...]: gateway.toml with its TLS
# listener, data, outbox and shop moved for this run, the shipped policies, the given
# per-IP limit on /auth/*, and any further sed expressions applied.
shipped_config() {
  local tls=$1 shop=$2 rate=$3
  shift 3
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$tls\"|" \
      -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
      -e "s|^policies = .*|policies = \"$PWD/policies\"|" \
      -e "s|^shop = .*|shop = \"http://127.0.0.1:$shop\"|" \
      -e "s|^auth_per_ip = .*|auth_per_ip = \"$rate\"|" \
      -e "s|^outbox = .*|outbox = \"$work/outbox\"|" \
      "$@" gateway.toml
}
