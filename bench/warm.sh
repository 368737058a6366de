#!/usr/bin/env bash
# Benchmarks `koidc get-token` as a whole process, the way kubectl runs it on every command:
#
#   warm file cache      token in <cache-dir>/<entry>.json
#   warm keyring cache   token in <entry>.enc, key from the kernel keyring (no D-Bus)
#   keyring, cold kernel keyring   each run in a new session keyring: the key comes from the
#                        Secret Service over D-Bus (what the first call after a reboot pays)
#
# against /bin/true (the floor of starting any process). A real Dex (built by
# tests/e2e/deps.sh) issues the token, a real gnome-keyring holds the key. Results go to
# docs/bench/warm.md (hyperfine's markdown) and stdout.
#
#   bench/warm.sh            # 1000 runs each
#   RUNS=200 bench/warm.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-1000}
for pkg in hyperfine keyutils gnome-keyring dbus python3; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="${missing:-} $pkg"
done
if [ -n "${missing:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
tests/e2e/deps.sh dex
eval "$(tests/e2e/deps.sh --print-env dex 2>/dev/null)"
cargo build --release --locked --quiet
koidc=$PWD/target/release/koidc

work=$(mktemp -d)
cleanup() {
  [ -n "${dex_pid:-}" ] && kill "$dex_pid" 2>/dev/null
  [ -n "${keyring_pid:-}" ] && kill "$keyring_pid" 2>/dev/null
  [ -n "${bus_pid:-}" ] && kill "$bus_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
issuer="http://127.0.0.1:$port/dex"
sed "s#127.0.0.1:5556#127.0.0.1:$port#g" examples/dex-config.yaml >"$work/dex.yaml"
"$KOIDC_E2E_DEX" serve "$work/dex.yaml" >"$work/dex.log" 2>&1 &
dex_pid=$!
for _ in $(seq 100); do
  curl -sf "$issuer/.well-known/openid-configuration" >/dev/null && break
  sleep 0.1
done

# A private session bus with an unlocked gnome-keyring (a real Secret Service).
read -r bus_addr bus_pid < <(dbus-daemon --session --fork --print-address=1 --print-pid=1 | paste -sd' ')
export DBUS_SESSION_BUS_ADDRESS=$bus_addr
eval "$(echo bench | gnome-keyring-daemon --components=secrets --unlock --daemonize)"
keyring_pid=${GNOME_KEYRING_PID:-}

common=(get-token --issuer "$issuer" --client-id koidc --scope email --scope groups --scope offline_access
  --browser-command "python3 $PWD/tests/support/fake-browser.py")
"$koidc" "${common[@]}" --cache file --cache-dir "$work/file" >/dev/null
"$koidc" "${common[@]}" --cache keyring --cache-dir "$work/keyring" >/dev/null
[ -n "$(ls "$work"/keyring/*.enc)" ] || { echo "bench: no encrypted entry was written" >&2; exit 1; }

q() { printf '%q ' "$@"; }
mkdir -p docs/bench
hyperfine -N --warmup 50 --runs "$RUNS" --export-markdown docs/bench/warm.md \
  -n '/bin/true' '/bin/true' \
  -n 'get-token, file cache' "$(q "$koidc" "${common[@]}" --cache file --cache-dir "$work/file")" \
  -n 'get-token, keyring cache (kernel keyring)' "$(q "$koidc" "${common[@]}" --cache keyring --cache-dir "$work/keyring")"
hyperfine -N --warmup 5 --runs $((RUNS / 10)) --export-markdown docs/bench/cold-keyring.md \
  -n 'keyctl session (floor)' "$(q keyctl session - /bin/true)" \
  -n 'get-token, keyring cache, key from the Secret Service' \
  "$(q keyctl session - "$koidc" "${common[@]}" --cache keyring --cache-dir "$work/keyring")"
echo "Dex saw these token requests during the benchmark (must be none after the two logins):"
grep -c 'login successful' "$work/dex.log" || true
