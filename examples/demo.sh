#!/usr/bin/env bash
# koidc demo: a throw-away Kubernetes control plane and identity provider on this machine, and
# one full login through them.
#
#   examples/demo.sh
#
# 1. Builds (once, into ~/.cache/koidc-e2e, with tests/e2e/deps.sh) the pinned Dex, kubectl, etcd
#    and kube-apiserver the test suite uses (Go 1.26+ needed; the apiserver takes minutes), and
#    koidc itself with cargo (or set KOIDC=/path/to/koidc).
# 2. Makes a throw-away CA with openssl and starts Dex (HTTPS), etcd and kube-apiserver on
#    127.0.0.1, on free ports. The apiserver runs what `koidc setup` prints: the
#    AuthenticationConfiguration trusting Dex, and the audit policy of `koidc setup --audit-policy`.
# 3. As the admin: `koidc bind-group reader-group reader -n application --apply`.
# 4. As the user reader@example.com (password reader-password): a kubeconfig written by
#    `koidc setup --write-kubeconfig`, then `kubectl auth whoami`, which logs in — in your browser
#    when there is a display (DISPLAY or WAYLAND_DISPLAY; it will warn about the throw-away CA),
#    else headless with the test suite's fake browser (KOIDC_DEMO_HEADLESS=1 forces that) — a
#    permitted command, a forbidden one, `koidc doctor`, and the audit log's record of the user.
#
# Everything lives in one temporary directory, removed with the processes on exit
# (KOIDC_DEMO_KEEP=1: keep them running until you press Enter). Nothing is written to your
# kubeconfig, koidc configuration or keyring: the demo's tokens are cached in files in that
# directory.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

say() { printf '\n\033[1mdemo: %s\033[0m\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

for tool in openssl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done

say "building the pinned Dex, kubectl, etcd and kube-apiserver if missing (the first time takes minutes)"
eval "$("$REPO/tests/e2e/deps.sh" --print-env all)"
DEX=$KOIDC_E2E_DEX KUBECTL=$KOIDC_E2E_KUBECTL ETCD=$KOIDC_E2E_ETCD APISERVER=$KOIDC_E2E_KUBE_APISERVER

if [[ -z ${KOIDC:-} ]]; then
  say "building koidc"
  cargo build --quiet --manifest-path "$REPO/Cargo.toml"
  KOIDC=${CARGO_TARGET_DIR:-$REPO/target}/debug/koidc
fi
[[ -x $KOIDC ]] || die "no koidc binary at $KOIDC"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/koidc-demo.XXXXXX")
chmod 700 "$WORK"
PIDS=()
cleanup() {
  local i pid killer
  # The apiserver first, then etcd, then Dex; one that has not stopped after 10 s is killed (the
  # killer can only hit our own child: the pid stays ours until `wait` reaps it).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill "$pid" 2>/dev/null || true
    (sleep 10 && kill -9 "$pid") >/dev/null 2>&1 &
    killer=$!
    wait "$pid" 2>/dev/null || true
    kill "$killer" 2>/dev/null || true
    wait "$killer" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for WHAT SECONDS COMMAND...: retry COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${secs}s; see the logs in $WORK (KOIDC_DEMO_KEEP=1 keeps them)"
}

# --- a throw-away CA and certificates ------------------------------------------------------------
say "making a throw-away CA and certificates in $WORK/pki"
PKI=$WORK/pki
mkdir -p "$PKI"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 \
    -subj "/CN=koidc demo CA" 2>/dev/null
  leaf() { # NAME SUBJECT EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
      -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  leaf dex "/CN=dex" $'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'
  leaf apiserver "/CN=kube-apiserver" \
    $'subjectAltName=IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth'
  leaf admin "/O=system:masters/CN=demo-admin" 'extendedKeyUsage=clientAuth'
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)
CA=$PKI/ca.crt

# --- Dex -------------------------------------------------------------------------------------------
DEX_PORT=$(free_port)
ISSUER=https://127.0.0.1:$DEX_PORT/dex
# reader@example.com / reader-password in group reader-group; writer@example.com / writer-password
# in group writer-group (bcrypt hashes as in tests/it/kube.rs). No approval screen; the public
# client `koidc` accepts any loopback redirect URI.
cat >"$WORK/dex.yaml" <<EOF
issuer: $ISSUER
storage: {type: memory}
web:
  https: 127.0.0.1:$DEX_PORT
  tlsCert: $PKI/dex.crt
  tlsKey: $PKI/dex.key
logger: {level: info}
oauth2: {skipApprovalScreen: true}
enablePasswordDB: true
staticPasswords:
  - email: reader@example.com
    hash: "\$2b\$10\$0q7X7Ezzi0tjRi9/O8WRDOrmdnoJmzUwzUsyT/3GtIo0Qq.Y9q6Pm"
    username: reader
    userID: 5d1c3c4e-0a1b-4c55-9f1e-7a1d2b3c4d01
    groups: [reader-group]
  - email: writer@example.com
    hash: "\$2b\$10\$ay4z7bY/n4tGFWwOtDofJuNb7V9mlpP6vwl3j90AsqBeDAnJYe81W"
    username: writer
    userID: 5d1c3c4e-0a1b-4c55-9f1e-7a1d2b3c4d02
    groups: [writer-group]
staticClients:
  - {id: koidc, name: koidc, public: true}
EOF
say "starting Dex at $ISSUER"
"$DEX" serve "$WORK/dex.yaml" >"$WORK/dex.log" 2>&1 &
PIDS+=($!)
dex_ready() {
  python3 - "$ISSUER/.well-known/openid-configuration" "$CA" <<'PY'
import ssl, sys, urllib.request
urllib.request.urlopen(sys.argv[1], context=ssl.create_default_context(cafile=sys.argv[2]), timeout=2)
PY
}
wait_for Dex 30 dex_ready

# No koidc profiles: a config file that does not exist.
NO_CONFIG=$WORK/no-koidc-config.toml
# The admin's koidc: its own HOME and configuration dir (setup saves the groups prefix there for
# bind-group), never yours.
ADMIN_HOME=$WORK/admin
mkdir -p "$ADMIN_HOME"
koidc_admin() { env HOME="$ADMIN_HOME" XDG_CONFIG_HOME="$ADMIN_HOME/config" KOIDC_CONFIG="$NO_CONFIG" "$KOIDC" "$@"; }
SETUP_ARGS=(--issuer "$ISSUER" --client-id koidc --scope email --scope groups --scope offline_access
  --certificate-authority "$CA")

say "koidc setup: the AuthenticationConfiguration and the audit policy the apiserver runs with"
koidc_admin setup "${SETUP_ARGS[@]}" --print authentication-config >"$WORK/authn.yaml"
koidc_admin setup --audit-policy >"$WORK/audit-policy.yaml"
# Shown without the inline CA certificate.
python3 - "$WORK/authn.yaml" <<'PY'
import sys
skip = None
for line in open(sys.argv[1]):
    indent = len(line) - len(line.lstrip())
    if skip is not None and indent > skip:
        continue
    skip = None
    if line.strip() == "certificateAuthority: |":
        skip = indent
        line = line.replace("|", "(the throw-away CA, PEM)")
    print("    " + line.rstrip())
PY

# --- etcd and kube-apiserver -----------------------------------------------------------------------
ETCD_PORT=$(free_port) ETCD_PEER=$(free_port) API_PORT=$(free_port)
say "starting etcd and kube-apiserver at https://127.0.0.1:$API_PORT"
"$ETCD" --name demo --data-dir "$WORK/etcd" --unsafe-no-fsync --log-level=warn \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "demo=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
AUDIT_LOG=$WORK/audit.log
"$APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --secure-port "$API_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$CA" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-mode RBAC \
  --authentication-config "$WORK/authn.yaml" \
  --audit-policy-file "$WORK/audit-policy.yaml" --audit-log-path "$AUDIT_LOG" --audit-log-maxage 1 \
  --disable-admission-plugins ServiceAccount \
  --endpoint-reconciler-type none >"$WORK/kube-apiserver.log" 2>&1 &
PIDS+=($!)

ADMIN_KC=$WORK/admin.kubeconfig
KUBE_CACHE=$WORK/kube-cache
kadmin() { "$KUBECTL" --kubeconfig "$ADMIN_KC" --cache-dir "$KUBE_CACHE/admin" "$@"; }
kadmin config set-cluster demo --server "https://127.0.0.1:$API_PORT" --certificate-authority "$CA" \
  --embed-certs >/dev/null
kadmin config set-credentials admin --client-certificate "$PKI/admin.crt" --client-key "$PKI/admin.key" \
  --embed-certs >/dev/null
kadmin config set-context admin --cluster demo --user admin >/dev/null
kadmin config use-context admin >/dev/null
wait_for kube-apiserver 180 kadmin get --raw /readyz

say "the admin: namespaces, a pod, and \`koidc bind-group reader-group reader -n application --apply\`"
kadmin create namespace application >/dev/null
kadmin create namespace other >/dev/null
kadmin run seed -n application --image registry.invalid/koidc/never-pulled:0 --restart Never >/dev/null
koidc_admin bind-group reader-group reader -n application --apply --kubectl "$KUBECTL" --kubeconfig "$ADMIN_KC"

# --- the user --------------------------------------------------------------------------------------
USER_DIR=$WORK/user
USER_KC=$USER_DIR/kubeconfig
mkdir -p "$USER_DIR"
kuser() { "$KUBECTL" --kubeconfig "$USER_KC" --cache-dir "$KUBE_CACHE/user" "$@"; }
kuser config set-cluster demo --server "https://127.0.0.1:$API_PORT" --certificate-authority "$CA" \
  --embed-certs >/dev/null
kuser config set-context demo --cluster demo --user oidc >/dev/null
kuser config use-context demo >/dev/null
say "the user's kubeconfig entry, written by \`koidc setup --write-kubeconfig\`"
env XDG_CONFIG_HOME="$USER_DIR/config" KOIDC_CONFIG="$NO_CONFIG" "$KOIDC" setup "${SETUP_ARGS[@]}" \
  --write-kubeconfig --kubeconfig "$USER_KC" --user oidc --exec-command "$KOIDC" --print kubeconfig

# kubectl hands its environment to `koidc get-token`: keep the demo's tokens in files here.
export KOIDC_CACHE=file KOIDC_CACHE_DIR=$USER_DIR/cache KOIDC_CONFIG=$NO_CONFIG
if [[ -z ${KOIDC_DEMO_HEADLESS:-} && ( -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ) ]]; then
  say "logging in with your browser: sign in as reader@example.com, password reader-password"
  echo "    (the browser will warn that it does not know the demo's throw-away CA: accept it for"
  echo "    https://127.0.0.1:$DEX_PORT; the CA is $CA)"
else
  say "no display (or KOIDC_DEMO_HEADLESS=1): logging in headless with tests/support/fake-browser.py as reader@example.com"
  export KOIDC_BROWSER_COMMAND="env SSL_CERT_FILE=$CA $REPO/tests/support/fake-browser.py"
  export FAKE_BROWSER_LOGIN=reader@example.com FAKE_BROWSER_PASSWORD=reader-password
fi

say "kubectl auth whoami"
kuser auth whoami

say "permitted: kubectl get pods -n application"
kuser get pods -n application

say "forbidden: kubectl delete pod seed -n application"
if out=$(kuser delete pod seed -n application 2>&1); then
  die "the reader deleted a pod: RBAC is not working"
fi
printf '%s\n' "$out"
[[ $out == *forbidden* ]] || die "expected an RBAC refusal"
echo "    (refused by RBAC, as it should be: reader-group may only read pods)"

say "koidc doctor -n application: the whole chain, one line per check"
env XDG_CONFIG_HOME="$USER_DIR/config" "$KOIDC" doctor --kubeconfig "$USER_KC" -n application \
  --admin-kubeconfig "$ADMIN_KC" --kubectl "$KUBECTL"

say "the audit log: who did what (what \`koidc setup --audit-policy\` records)"
python3 - "$AUDIT_LOG" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    user = e.get("user", {})
    if not user.get("username", "").startswith("oidc:"):
        continue
    ref = e.get("objectRef", {})
    what = " ".join(x for x in (ref.get("resource"), ref.get("name"), "in " + ref["namespace"] if ref.get("namespace") else "") if x)
    groups = ", ".join(user.get("groups", []))
    print(f"    {user['username']} [{groups}] {e['verb']} {what or e.get('requestURI', '').split('?')[0]}"
          f" -> {e.get('responseStatus', {}).get('code')} ({e['level']})")
PY

if [[ -n ${KOIDC_DEMO_KEEP:-} ]]; then
  say "everything is still running; try it yourself:"
  echo "    export KUBECONFIG=$USER_KC KOIDC_CACHE=file KOIDC_CACHE_DIR=$USER_DIR/cache"
  echo "    kubectl get pods -n application      # admin: KUBECONFIG=$ADMIN_KC"
  read -r -p "press Enter to stop and remove everything " _
fi
say "done; stopping everything and removing $WORK"
