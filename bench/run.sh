#!/usr/bin/env bash
# koidc's benchmarks, one command: whole processes on this machine, side by side, medians of
# many runs, against /bin/true (the floor of starting any process) and int128/kubelogin (the Go
# exec plugin koidc replaces), with the same Dex issuer, client and scopes for both.
#
#   bench/run.sh [SECTION...]      default: all sections; report in docs/bench/results.md
#
# SECTION:
#   warm      hyperfine: warm `get-token` (valid token cached) per cache backend — koidc
#             --cache file, --cache keyring with the key in the kernel keyring, the same with a
#             cold kernel keyring (key from the Secret Service over D-Bus, under
#             `keyctl session -`); a pipeline's `--grant workload`: the job's token read from its
#             file on every call, and a GitHub Actions token (from a loopback stand-in) cached;
#             kubelogin --token-cache-storage disk and keyring
#   rss       peak RSS of those warm calls (`/usr/bin/time -f %M`), median of RSS_RUNS
#   size      binary sizes (koidc release: strip = true; kubelogin: -ldflags "-s -w")
#   kubectl   hyperfine: `kubectl get --raw /version` against a local HTTPS stub apiserver with
#             a static token versus exec koidc / exec kubelogin (warm): the added time
#   refresh   ID token inside koidc's 90 s margin (Dex issues 95 s tokens), valid refresh
#             token: wall time, time waiting for Dex (timing proxy), koidc's own time; also with
#             the root CAs from the bundle file only, and with none (what loading them costs)
#   login     browser login into an empty cache (--no-browser; measure.py plays the browser):
#             wall, browser, Dex and koidc's own time
#   parallel  PROCS (64) `get-token` started at once on an expired token: refresh grants seen
#             by Dex (must be 1), distinct tokens printed (must be 1), wall time
#   reread    the warm calls again, after dropping each binary's page cache so that it is read
#             back by the binary's own page faults (as after the kernel reclaimed it)
#
# Environment: RUNS (hyperfine runs of each warm command, 1000), COLD_RUNS (200), KUBECTL_RUNS
# (300), RSS_RUNS (200), PATH_RUNS (refresh and login runs, 20), PARALLEL_ROUNDS (5), PROCS (64),
# LOAD_MAX (0.5) and LOAD_WAIT (900 s): before measuring, wait (polling every 30 s, at most
# LOAD_WAIT) until the 1-minute load average is at most LOAD_MAX; before each further section
# wait again, at most SECTION_WAIT (120 s). KOIDC_BIN: benchmark this binary instead of
# building koidc as ./install.sh does (static, .cargo/static.toml). VARIANTS="pie dynamic":
# also build and measure the static-pie build (.cargo/static-pie.toml, KOIDC_PIE=1
# ./install.sh) and cargo's default dynamically linked build. REPORT: where the report
# goes (docs/bench/results.md). RESULTS_DIR: keep the raw results (hyperfine JSON, measure.jsonl)
# there; `python3 bench/measure.py report --results DIR --out FILE` rebuilds the report.
#
# What runs: tests/e2e/deps.sh builds the pinned Dex, kubectl and kubelogin; two Dex servers
# (1 h and 95 s ID tokens) each behind bench/idp-proxy.py, which logs every request with its
# timing (Dex logs none); a private D-Bus session with an unlocked gnome-keyring; and the whole
# run inside a new kernel session keyring (`keyctl session -`), so nothing is left behind.
set -euo pipefail
# The whole script is one block, read before it runs: editing this file during a run (a git pull)
# cannot change what the running instance executes.
{
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# A private kernel session keyring for the whole run (koidc keeps its key there).
if [ -z "${KOIDC_BENCH_SESSION:-}" ]; then
  command -v keyctl >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq keyutils >/dev/null
  }
  KOIDC_BENCH_SESSION=1 exec keyctl session - "$0" "$@"
fi

RUNS=${RUNS:-1000}
COLD_RUNS=${COLD_RUNS:-200}
KUBECTL_RUNS=${KUBECTL_RUNS:-300}
RSS_RUNS=${RSS_RUNS:-200}
PATH_RUNS=${PATH_RUNS:-20}
PARALLEL_ROUNDS=${PARALLEL_ROUNDS:-5}
PROCS=${PROCS:-64}
LOAD_MAX=${LOAD_MAX:-0.5}
LOAD_WAIT=${LOAD_WAIT:-900}
SECTION_WAIT=${SECTION_WAIT:-120}
REPORT=${REPORT:-docs/bench/results.md}
# Dex's ID token lifetime for refresh and parallel: koidc refreshes a token with less than 90 s
# left, so a 95 s token is due GAP seconds after it was issued.
SHORT_EXPIRY=95s
GAP=5.3

all_sections=(warm rss size kubectl refresh login parallel reread)
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=("${all_sections[@]}")
for s in "${sections[@]}"; do
  [[ " ${all_sections[*]} " == *" $s "* ]] || {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
done
want() { [[ " ${sections[*]} " == *" $1 "* ]]; }
say() { printf 'bench: %s\n' "$*" >&2; }

missing=()
for pkg in hyperfine keyutils gnome-keyring dbus python3 time openssl curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
tests/e2e/deps.sh dex kubectl kubelogin >&2
eval "$(tests/e2e/deps.sh --print-env dex kubectl kubelogin 2>/dev/null)"

work=$(mktemp -d /tmp/koidc-bench.XXXXXX)
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
results=${RESULTS_DIR:-$work/results}
mkdir -p "$work/bin" "$work/logins" "$results"
rm -f "$results/measure.jsonl"

# The binaries under test are copied, so a rebuild by someone else cannot swap them mid-run.
# koidc is built as ./install.sh builds it (.cargo/release.sh: statically linked on x86_64 Linux
# with glibc); VARIANTS adds other builds beside it, each measured under its own name.
# shellcheck source=.cargo/release.sh
. .cargo/release.sh
if [ -n "${KOIDC_BIN:-}" ]; then
  cp "$KOIDC_BIN" "$work/bin/koidc"
else
  say "building the release binary as ./install.sh does"
  koidc_release_build static.toml
  cp "$koidc_release_bin" "$work/bin/koidc"
fi
koidc=$work/bin/koidc
# variant_names[i] is measured as "koidc <name>" with the binary variant_bins[i].
variant_names=() variant_bins=()
for v in ${VARIANTS:-}; do
  case $v in
    pie)
      koidc_cargo_options static-pie.toml
      ((${#koidc_cargo_args[@]})) || { say "VARIANTS=pie: no static build on $koidc_host"; exit 2; }
      say "building the static-pie variant (.cargo/static-pie.toml) in target/static-pie"
      koidc_release_build static-pie.toml target/static-pie
      cp "$koidc_release_bin" "$work/bin/koidc-pie"
      variant_names+=("static-pie") variant_bins+=("$work/bin/koidc-pie")
      ;;
    dynamic)
      say "building the dynamically linked variant (plain cargo build --release)"
      cargo build --release --locked --quiet
      cp target/release/koidc "$work/bin/koidc-dynamic"
      variant_names+=("dynamic") variant_bins+=("$work/bin/koidc-dynamic")
      ;;
    *) say "VARIANTS: unknown variant $v (pie, dynamic)"; exit 2 ;;
  esac
done
kubelogin=$work/bin/kubelogin
cp "$KOIDC_E2E_KUBELOGIN" "$kubelogin"
kubectl=$KOIDC_E2E_KUBECTL
# kubelogin runs --browser-command as one executable with the URL as its only argument.
# shellcheck disable=SC2016 # "$1" is for the generated script
printf '#!/bin/sh\nexec python3 %q browser "$1"\n' "$root/bench/measure.py" >"$work/bin/browser"
chmod +x "$work/bin/browser"
browser=$work/bin/browser

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_dex NAME ID_TOKEN_EXPIRY: Dex on one port, bench/idp-proxy.py in front of it on the
# issuer's port; sets issuer and proxylog.
start_dex() {
  local name=$1 expiry=$2 dex_port proxy_port
  dex_port=$(free_port)
  proxy_port=$(free_port)
  issuer=http://127.0.0.1:$proxy_port/dex
  sed -e "s#^issuer: .*#issuer: $issuer#" -e "s#^  http: .*#  http: 127.0.0.1:$dex_port#" \
    -e "s#^  idTokens: .*#  idTokens: $expiry#" examples/dex-config.yaml >"$work/dex-$name.yaml"
  # Dex keeps one refresh token per user and client: a login replaces the refresh token of
  # the previous one. Each identity that refreshes gets a client of its own (staticClients
  # is the file's last list).
  local c
  for c in bench-refresh-keyring bench-refresh-file bench-refresh-bundle bench-refresh-noroots bench-parallel; do
    printf '  - id: %s\n    name: %s\n    public: true\n' "$c" "$c" >>"$work/dex-$name.yaml"
  done
  grep -q "idTokens: $expiry" "$work/dex-$name.yaml" || { say "cannot set the ID token expiry"; exit 1; }
  "$KOIDC_E2E_DEX" serve "$work/dex-$name.yaml" >"$work/dex-$name.log" 2>&1 &
  pids+=($!)
  python3 bench/idp-proxy.py "$proxy_port" "$dex_port" "$work/proxy-$name.jsonl" &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "$issuer/.well-known/openid-configuration" >/dev/null && break
    sleep 0.1
  done
  curl -sf "$issuer/.well-known/openid-configuration" >/dev/null || {
    say "Dex ($name) did not start:"; tail "$work/dex-$name.log" >&2; exit 1; }
  proxylog=$work/proxy-$name.jsonl
}
start_dex long 1h
issuer_long=$issuer proxylog_long=$proxylog
start_dex short "$SHORT_EXPIRY"
issuer_short=$issuer proxylog_short=$proxylog

# A private session bus with an unlocked gnome-keyring (a real Secret Service), its keyring
# files in $work.
read -r bus_addr bus_pid < <(dbus-daemon --session --fork --print-address=1 --print-pid=1 | paste -sd' ')
pids+=("$bus_pid")
export DBUS_SESSION_BUS_ADDRESS=$bus_addr
eval "$(echo bench | XDG_DATA_HOME=$work/xdg gnome-keyring-daemon --components=secrets --unlock --daemonize)"
[ -n "${GNOME_KEYRING_PID:-}" ] && pids+=("$GNOME_KEYRING_PID")
# The system's root CAs as every TLS client finds them by default (openssl-probe: the bundle
# file and the certificate directory), not as this shell's environment may override them.
unset SSL_CERT_FILE SSL_CERT_DIR
# What kubectl passes to a credential plugin (a non-interactive call).
export KUBERNETES_EXEC_INFO='{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}'

scopes=(--scope email --scope groups --scope offline_access)
# koidc_args ISSUER CACHE DIR [CLIENT]: a get-token command line.
koidc_args() {
  printf '%s\0' get-token --issuer "$1" --client-id "${4:-koidc}" "${scopes[@]}" --cache "$2" \
    --cache-dir "$3" --browser-command "$browser"
}
kubelogin_args() {
  printf '%s\0' get-token --oidc-issuer-url "$1" --oidc-client-id koidc --oidc-extra-scope email \
    --oidc-extra-scope groups --oidc-extra-scope offline_access --token-cache-storage "$2" \
    --token-cache-dir "$3" --listen-address "127.0.0.1:$(free_port)" --browser-command "$browser"
}
mapfile -d '' k_file < <(koidc_args "$issuer_long" file "$work/koidc-file")
mapfile -d '' k_keyring < <(koidc_args "$issuer_long" keyring "$work/koidc-keyring")
mapfile -d '' l_disk < <(kubelogin_args "$issuer_long" disk "$work/kubelogin-disk")
# A pipeline: a CI job's token in a file (as a Kubernetes projected token), valid for two hours.
python3 - "$work/job-token" <<'PY'
import base64, json, sys, time
b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "https://token.actions.githubusercontent.com", "aud": "kubernetes", "sub": "repo:acme/app:ref:refs/heads/main",
          "repository": "acme/app", "ref": "refs/heads/main", "iat": now, "exp": now + 7200}
open(sys.argv[1], "w").write(b64({"alg": "RS256", "kid": "k"}) + "." + b64(claims) + "." + "c2ln" * 60)
PY
k_workload=(get-token --grant workload --token-source "file:$work/job-token" --audience kubernetes --cache file
  --cache-dir "$work/koidc-workload")
# A GitHub Actions job: a token service on loopback answering with that token (asked once; the
# warm calls are served from the cache, for this job's request URL and bearer).
actions_port=$(free_port)
python3 - "$actions_port" "$work/job-token" > "$work/actions.log" 2>&1 <<'PY' &
import http.server, json, sys
token = open(sys.argv[2]).read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == "bearer bench-job-bearer"
        body = json.dumps({"value": token} if ok else {"message": "Unauthorized"}).encode()
        self.send_response(200 if ok else 401); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a):
        print("request", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
k_actions=(get-token --grant workload --token-source github-actions --audience kubernetes --cache file
  --cache-dir "$work/koidc-actions")
export ACTIONS_ID_TOKEN_REQUEST_URL="http://127.0.0.1:$actions_port/token?api-version=2.0"
export ACTIONS_ID_TOKEN_REQUEST_TOKEN=bench-job-bearer
mapfile -d '' l_keyring < <(kubelogin_args "$issuer_long" keyring "$work/kubelogin-keyring")

# One browser login each, then every warm call must be served from the cache.
say "logging in once per plugin and cache backend"
setup_login() {
  "$@" >/dev/null 2>"$work/setup-login.log" || { say "login failed: $*"; cat "$work/setup-login.log" >&2; exit 1; }
}
setup_login "$koidc" "${k_file[@]}"
setup_login "$koidc" "${k_keyring[@]}"
setup_login "$koidc" "${k_workload[@]}"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$actions_port") 2>/dev/null && break; sleep 0.1; done
setup_login "$koidc" "${k_actions[@]}"
setup_login "$kubelogin" "${l_disk[@]}"
setup_login "$kubelogin" "${l_keyring[@]}"
[ -n "$(ls "$work"/koidc-keyring/*.enc 2>/dev/null)" ] || { say "koidc wrote no encrypted entry"; exit 1; }
for f in "$work"/kubelogin-keyring/*; do
  [[ $f == *.lock || ! -e $f ]] || { say "kubelogin keyring storage wrote a token file: $f"; exit 1; }
done
logins_long=$(grep -c '"grant"' "$proxylog_long")

q() { printf '%q ' "$@"; }
js() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }
declare -A load
# quiet MAX_WAIT POLL: wait until the 1-minute load average is at most LOAD_MAX, at most
# MAX_WAIT seconds, then measure anyway (the report shows the load of each section).
quiet() {
  local waited=0 l
  while :; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$l" -v m="$LOAD_MAX" 'BEGIN { exit !(l <= m) }' && break
    if ((waited >= $1)); then
      say "load average $l is still above $LOAD_MAX after ${1}s; measuring anyway"
      break
    fi
    say "load average $l > $LOAD_MAX; waiting ${2}s"
    sleep "$2"
    waited=$((waited + $2))
  done
}
# Before each section: let the previous section's load (or someone else's) settle.
mark() {
  quiet "$SECTION_WAIT" 15
  load[$1]=$(cut -d' ' -f1-3 /proc/loadavg)
  say "$1 (load average ${load[$1]})"
}

quiet "$LOAD_WAIT" 30

if want warm; then
  mark warm
  # `--version` rows: process start-up, dynamic linking and argument parsing only (no cache).
  warm=(-n '/bin/true' /bin/true
    -n 'koidc, --cache file' "$(q "$koidc" "${k_file[@]}")"
    -n 'koidc, --cache keyring (key in the kernel keyring)' "$(q "$koidc" "${k_keyring[@]}")"
    -n 'koidc --grant workload, job token read from its file on every call' "$(q "$koidc" "${k_workload[@]}")"
    -n 'koidc --grant workload, GitHub Actions token cached, --cache file' "$(q "$koidc" "${k_actions[@]}")"
    -n 'koidc --version (start-up only)' "$(q "$koidc" --version)")
  for i in "${!variant_names[@]}"; do
    warm+=(-n "koidc ${variant_names[i]}, --cache file" "$(q "${variant_bins[i]}" "${k_file[@]}")"
      -n "koidc ${variant_names[i]}, --cache keyring (kernel keyring)" "$(q "${variant_bins[i]}" "${k_keyring[@]}")"
      -n "koidc ${variant_names[i]} --version (start-up only)" "$(q "${variant_bins[i]}" --version)")
  done
  warm+=(-n 'kubelogin, --token-cache-storage disk' "$(q "$kubelogin" "${l_disk[@]}")"
    -n 'kubelogin, --token-cache-storage keyring (Secret Service)' "$(q "$kubelogin" "${l_keyring[@]}")"
    -n 'kubelogin --version (start-up only)' "$(q "$kubelogin" --version)")
  hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$results/warm.json" "${warm[@]}"
  hyperfine -N --warmup 5 --runs "$COLD_RUNS" --export-json "$results/cold-keyring.json" \
    -n 'keyctl session - /bin/true' "$(q keyctl session - /bin/true)" \
    -n 'keyctl session - koidc, --cache file' "$(q keyctl session - "$koidc" "${k_file[@]}")" \
    -n 'keyctl session - koidc, --cache keyring (key from the Secret Service)' \
    "$(q keyctl session - "$koidc" "${k_keyring[@]}")"
fi

if want rss; then
  mark rss
  m() { python3 bench/measure.py rss --runs "$RSS_RUNS" --out "$results/measure.jsonl" --name "$@"; }
  m '/bin/true' -- /bin/true
  m 'koidc, --cache file' -- "$koidc" "${k_file[@]}"
  m 'koidc, --cache keyring (kernel keyring)' -- "$koidc" "${k_keyring[@]}"
  m 'koidc, --cache keyring (Secret Service; under keyctl session -)' -- keyctl session - "$koidc" "${k_keyring[@]}"
  for i in "${!variant_names[@]}"; do
    m "koidc ${variant_names[i]}, --cache file" -- "${variant_bins[i]}" "${k_file[@]}"
  done
  m 'kubelogin, disk' -- "$kubelogin" "${l_disk[@]}"
  m 'kubelogin, keyring (Secret Service)' -- "$kubelogin" "${l_keyring[@]}"
fi

if want size; then
  mark size
  {
    printf 'koidc\t%s\t%s\n' "$(stat -c %s "$koidc")" \
      'release profile (strip = true, lto = "thin", panic = "abort"), .cargo/static.toml'
    for i in "${!variant_names[@]}"; do
      printf 'koidc %s\t%s\t%s\n' "${variant_names[i]}" "$(stat -c %s "${variant_bins[i]}")" \
        "the same, built as the ${variant_names[i]} variant"
    done
    printf 'kubelogin %s\t%s\t%s\n' "$("$kubelogin" --version | awk '{print $3}')" "$(stat -c %s "$kubelogin")" \
      'go build -trimpath -ldflags "-s -w" (stripped), CGO_ENABLED=0'
  } >"$results/sizes.tsv"
  cat "$results/sizes.tsv" >&2
fi

if want kubectl; then
  mark kubectl
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/apiserver.key" -out "$work/apiserver.crt" 2>/dev/null
  python3 bench/version-server.py "$work/apiserver.crt" "$work/apiserver.key" "$work/apiserver.port" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/apiserver.port" ] && break; sleep 0.1; done
  server=https://127.0.0.1:$(cat "$work/apiserver.port")
  # Three kubeconfigs, one user each. The static one holds the very token koidc serves (read
  # from koidc's stdout, never passed as an argument), so the request is the same size.
  kc() { python3 bench/measure.py kubeconfig --server "$server" --ca "$work/apiserver.crt" --out "$@"; }
  "$koidc" "${k_keyring[@]}" | kc "$work/kubeconfig-static" --token-from-stdin
  kc "$work/kubeconfig-koidc" --exec "$(js "$koidc" "${k_keyring[@]}")"
  kc "$work/kubeconfig-kubelogin" --exec "$(js "$kubelogin" "${l_disk[@]}")"
  for u in static koidc kubelogin; do
    env -u KUBERNETES_EXEC_INFO "$kubectl" --kubeconfig "$work/kubeconfig-$u" get --raw /version >/dev/null ||
      { say "kubectl with the $u user failed"; exit 1; }
  done
  # A difference of a millisecond or two between commands of 35 ms: hyperfine runs one command
  # after the other, so a change of background load would favour one of them. Three passes of
  # KUBECTL_RUNS/3 runs in rotated order; the report pools each command's times.
  kube=(-n 'kubectl, static token' "$(q "$kubectl" --kubeconfig "$work/kubeconfig-static" get --raw /version)"
    -n 'kubectl, exec koidc (warm, --cache keyring)' "$(q "$kubectl" --kubeconfig "$work/kubeconfig-koidc" get --raw /version)"
    -n 'kubectl, exec kubelogin (warm, disk)' "$(q "$kubectl" --kubeconfig "$work/kubeconfig-kubelogin" get --raw /version)")
  rm -f "$results"/kubectl-*.json
  for pass in 0 1 2; do
    order=()
    for i in 0 1 2; do
      j=$(((i + pass) % 3 * 3))
      order+=("${kube[@]:j:3}")
    done
    (unset KUBERNETES_EXEC_INFO
     hyperfine -N --warmup 10 --runs $((KUBECTL_RUNS / 3)) --export-json "$results/kubectl-$pass.json" "${order[@]}")
  done
fi

# Warm means warm: no token request reached Dex after the setup logins.
if want warm || want kubectl; then
  now=$(grep -c '"grant"' "$proxylog_long")
  [ "$now" -eq "$logins_long" ] || { say "Dex saw $((now - logins_long)) token requests during the warm runs"; exit 1; }
  say "Dex saw no token request during the warm runs (only the $logins_long setup logins)"
  actions_requests=$(grep -c '^request' "$work/actions.log" || true)
  [ "$actions_requests" -eq 1 ] || { say "the Actions stand-in saw $actions_requests token requests (1 expected)"; exit 1; }
fi

if want refresh || want parallel; then
  mapfile -d '' r_keyring < <(koidc_args "$issuer_short" keyring "$work/refresh-keyring" bench-refresh-keyring)
  mapfile -d '' r_file < <(koidc_args "$issuer_short" file "$work/refresh-file" bench-refresh-file)
  mapfile -d '' p_keyring < <(koidc_args "$issuer_short" keyring "$work/parallel-keyring" bench-parallel)
  setup_login "$koidc" "${r_keyring[@]}"
  setup_login "$koidc" "${r_file[@]}"
  if want refresh; then
    mapfile -d '' r_bundle < <(koidc_args "$issuer_short" file "$work/refresh-bundle" bench-refresh-bundle)
    mapfile -d '' r_noroots < <(koidc_args "$issuer_short" file "$work/refresh-noroots" bench-refresh-noroots)
    setup_login "$koidc" "${r_bundle[@]}"
    setup_login "$koidc" "${r_noroots[@]}"
  fi
  setup_login "$koidc" "${p_keyring[@]}"
fi

if want refresh || want login; then
  python3 bench/measure.py floor --runs 200 --out "$results/measure.jsonl"
fi

if want refresh; then
  mark refresh
  # Debian's bundle file, which openssl-probe finds first (/etc/ssl/certs holds the same CAs
  # again as one file each).
  bundle=/etc/ssl/certs/ca-certificates.crt
  python3 bench/measure.py refresh --runs "$PATH_RUNS" --gap "$GAP" --out "$results/measure.jsonl" \
    --proxy-log "$proxylog_short" \
    --cmd 'koidc, --cache keyring' "$(js "$koidc" "${r_keyring[@]}")" \
    --cmd 'koidc, --cache file' "$(js "$koidc" "${r_file[@]}")" \
    --cmd 'koidc, --cache file, root CAs from the bundle file only (SSL_CERT_FILE)' \
    "{\"env\": {\"SSL_CERT_FILE\": \"$bundle\"}, \"argv\": $(js "$koidc" "${r_bundle[@]}")}" \
    --cmd 'koidc, --cache file, no root CAs (SSL_CERT_FILE=/dev/null)' \
    "{\"env\": {\"SSL_CERT_FILE\": \"/dev/null\"}, \"argv\": $(js "$koidc" "${r_noroots[@]}")}"
fi

if want login; then
  mark login
  l() { printf '%s\0' get-token --issuer "$issuer_long" --client-id koidc "${scopes[@]}" --cache "$1" \
    --cache-dir "$2" --no-browser --grant authcode; }
  mapfile -d '' n_keyring < <(l keyring '{kept_cache_dir}')
  mapfile -d '' n_keyring_first < <(l keyring '{cache_dir}')
  mapfile -d '' n_file < <(l file '{cache_dir}')
  python3 bench/measure.py login --runs "$PATH_RUNS" --out "$results/measure.jsonl" \
    --proxy-log "$proxylog_long" --cache-root "$work/logins" \
    --cmd 'koidc, --cache keyring (master key already in the keyrings)' "$(js "$koidc" "${n_keyring[@]}")" \
    --cmd 'koidc, --cache keyring, first login (new master key into the Secret Service)' \
    "$(js "$koidc" "${n_keyring_first[@]}")" \
    --cmd 'koidc, --cache file' "$(js "$koidc" "${n_file[@]}")"
fi

if want parallel; then
  mark parallel
  python3 bench/measure.py parallel --rounds "$PARALLEL_ROUNDS" --procs "$PROCS" --gap "$GAP" \
    --out "$results/measure.jsonl" --proxy-log "$proxylog_short" \
    --name "koidc, --cache keyring" \
    --compare "$PROCS × /bin/true" "$(js /bin/true)" \
    --compare "$PROCS × warm koidc" "$(js "$koidc" "${k_keyring[@]}")" \
    -- "$koidc" "${p_keyring[@]}"
fi

if want reread; then
  mark reread
  # The other sections run binaries that `cp` has just written, whose page cache the kernel keeps
  # in large folios. Once the kernel has reclaimed a binary's pages (memory pressure, or DAMON), they
  # come back through the page faults of running it, in smaller pieces: more page faults per
  # start. The warm calls in that state, for every binary alike (the warm-up runs read them back).
  # Last, because the binaries stay in that state.
  python3 bench/measure.py evict /bin/true "$koidc" "$kubelogin"
  hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$results/warm-reread.json" \
    -n '/bin/true' /bin/true \
    -n 'koidc, --cache file' "$(q "$koidc" "${k_file[@]}")" \
    -n 'koidc, --cache keyring (key in the kernel keyring)' "$(q "$koidc" "${k_keyring[@]}")" \
    -n 'kubelogin, --token-cache-storage disk' "$(q "$kubelogin" "${l_disk[@]}")" \
    -n 'kubelogin, --token-cache-storage keyring (Secret Service)' "$(q "$kubelogin" "${l_keyring[@]}")"
fi

python3 - "$results/meta.json" "$("$koidc" --version)" "$("$kubelogin" --version)" \
  "$("$KOIDC_E2E_DEX" version 2>&1 | head -1)" "$("$kubectl" version --client 2>/dev/null | head -1)" \
  "$(hyperfine --version)" "$(for k in "${!load[@]}"; do printf '%s=%s;' "$k" "${load[$k]}"; done)" <<'EOF'
import json, os, platform, sys, time
out, koidc, kubelogin, dex, kubectl, hyperfine, loads = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
               if l.startswith("PRETTY_NAME=")), "?")
order = ["warm", "rss", "size", "kubectl", "refresh", "login", "parallel", "reread"]
load = dict(kv.split("=", 1) for kv in loads.split(";") if kv)
json.dump({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(), "cpu": cpu,
           "os": osname, "koidc_version": koidc.split()[-1], "kubelogin_version": kubelogin.split()[-1],
           "dex_version": dex.split()[-1], "kubectl_version": kubectl.split()[-1],
           "hyperfine_version": hyperfine.split()[-1],
           "load": {k: load[k] for k in order if k in load}}, open(out, "w"))
EOF
mkdir -p "$(dirname "$REPORT")"
python3 bench/measure.py report --results "$results" --out "$REPORT"
exit
}
