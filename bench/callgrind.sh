#!/usr/bin/env bash
# Instruction counts of the warm `get-token` paths under callgrind: repeatable for the same binary
# and inputs, whatever else the machine is doing, so two builds can be compared to the
# instruction where wall-clock runs on a busy machine cannot. No network, no IdP: each case
# prepares its input in a temporary directory and runs koidc in an empty environment (only
# `KUBERNETES_EXEC_INFO`, as kubectl sets it).
#
#   bench/callgrind.sh [KOIDC_BIN]        default: target/release/koidc as ./install.sh builds it
#
# Cases (one line each on stdout: the case and its instruction count):
#   oidc-file   a valid ID token in the file cache (`--cache file`), the common warm call;
#   workload    `--grant workload --token-source file:PATH`: the job's token read on every call;
#   oidc-cluster  as oidc-file, with the cluster kubectl passes (`provideClusterInfo: true`) and
#               an exec extension without audience;
#   audience    a Dex issuer and the cluster's audience from its exec extension: the warm call
#               of one of several clusters (its own cache entry).
# Exits non-zero when a case does not print an ExecCredential with the prepared token.
set -euo pipefail

koidc=${1:-target/release/koidc}
[[ -x $koidc ]] || { echo "callgrind.sh: no koidc binary at $koidc (build it with ./install.sh)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 700 "$work"
exec_info='{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}'

# A JWT-shaped token (unsigned: the warm path reads a token koidc verified when it stored it)
# and the file cache entry koidc would have written for it (src/login/cache/entry.rs, the id of
# src/login/cache/mod.rs `CacheKey::id`).
python3 - "$work" <<'PY'
import base64, hashlib, json, os, struct, sys, time
work = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def jwt(claims):
    return ".".join([b64(json.dumps({"alg": "RS256", "kid": "k"}).encode()),
                     b64(json.dumps(claims).encode()), b64(b"signature")])
exp = int(time.time()) + 30 * 24 * 3600
issuer, client = "https://idp.example.com", "kubernetes"
token = jwt({"iss": issuer, "aud": client, "sub": "alice", "email": "alice@example.com",
             "groups": ["dev"], "iat": exp - 3600, "exp": exp})
cache = os.path.join(work, "cache")
os.mkdir(cache, 0o700)
def save(issuer, scopes, token):
    h = hashlib.sha256()
    def field(b):
        h.update(struct.pack(">Q", len(b))); h.update(b)
    field(b"koidc-cache-key-v1"); field(issuer.encode()); field(client.encode())
    field(struct.pack(">Q", len(scopes)))
    for s in scopes:
        field(s.encode())
    entry = {"version": 1, "issuer": issuer, "client_id": client, "scopes": scopes,
             "id_token": token, "refresh_token": "r"}
    fd = os.open(os.path.join(cache, h.hexdigest()[:32] + ".json"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(entry).encode()); os.close(fd)
save(issuer, [], token)
# Dex's preset scopes and the cross-client scope of the cluster's audience, sorted.
aud_token = jwt({"iss": issuer + "/dex", "aud": ["cluster-a", client], "azp": client, "sub": "alice",
                 "email": "alice@example.com", "groups": ["dev"], "iat": exp - 3600, "exp": exp})
save(issuer + "/dex", sorted(["offline_access", "groups", "email", "audience:server:client_id:cluster-a"]), aud_token)
open(os.path.join(work, "aud-token"), "w").write(aud_token)
job = jwt({"iss": "https://token.actions.githubusercontent.com", "aud": "kubernetes",
           "sub": "repo:acme/app:ref:refs/heads/main", "iat": exp - 3600, "exp": exp})
fd = os.open(os.path.join(work, "job-token"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, job.encode()); os.close(fd)
open(os.path.join(work, "id-token"), "w").write(token)
PY

# measure NAME ARGS...: one callgrind run; prints "NAME COUNT".
measure() {
  local name=$1; shift
  local out=$work/$name.out
  env -i KUBERNETES_EXEC_INFO="${case_exec_info:-$exec_info}" valgrind --tool=callgrind \
    --callgrind-out-file="$work/$name.cg" "$koidc" "$@" >"$out" 2>"$work/$name.err" || {
    echo "callgrind.sh: $name: koidc failed:" >&2; grep -v '^==' "$work/$name.err" >&2; exit 1; }
  local want
  case $name in
    workload) want=$(cat "$work/job-token") ;;
    audience) want=$(cat "$work/aud-token") ;;
    *) want=$(cat "$work/id-token") ;;
  esac
  grep -qF "\"token\":\"$want\"" "$out" || { echo "callgrind.sh: $name: no ExecCredential with the prepared token" >&2; exit 1; }
  local count
  count=$(sed -n 's/^==[0-9]*== Collected : //p' "$work/$name.err")
  printf '%s %s\n' "$name" "$count"
}

measure oidc-file get-token --issuer https://idp.example.com --client-id kubernetes \
  --cache file --cache-dir "$work/cache"
cluster='"cluster":{"server":"https://127.0.0.1:6443","certificate-authority-data":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="'
case_exec_info='{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false,'"$cluster"',"config":{"other":"x"}}}}' \
  measure oidc-cluster get-token --issuer https://idp.example.com --client-id kubernetes \
  --cache file --cache-dir "$work/cache"
case_exec_info='{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false,'"$cluster"',"config":{"audience":"cluster-a"}}}}' \
  measure audience get-token --issuer https://idp.example.com/dex --client-id kubernetes \
  --cache file --cache-dir "$work/cache"
measure workload get-token --grant workload --token-source "file:$work/job-token" \
  --audience kubernetes
