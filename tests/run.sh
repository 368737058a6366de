#!/usr/bin/env bash
# The koidc test command (README and .ci/run call exactly `./tests/run.sh`).
#
# 1. Installs the system packages the tests need when one is missing (Debian/Ubuntu, as root or
#    with sudo): keyutils (keyctl), gnome-keyring + dbus (a real Secret Service), libdbus-1-dev +
#    pkg-config (the keyring crate links libdbus), libc6-dev (the static glibc of the release
#    build), python3 (the fake browser), strace (tests/it/static_build.rs), tinyproxy (a real HTTP
#    proxy, tests/it/networks.rs), maven + unzip (fetching and unpacking Keycloak; Debian's maven
#    brings a Java that runs it).
# 2. Builds the pinned Dex, kubectl, etcd and kube-apiserver once and fetches Keycloak (Maven
#    Central, with mvn; tests/e2e/deps.sh, cached under ~/.cache/koidc-e2e) and exports
#    KOIDC_E2E_DEX / KOIDC_E2E_KUBECTL / KOIDC_E2E_ETCD / KOIDC_E2E_KUBE_APISERVER /
#    KOIDC_E2E_KEYCLOAK / KOIDC_E2E_KEYCLOAK_JAVA_HOME for the integration tests.
#    Installs the Okta-like test IdP (tests/okta, `npm ci`) when its node_modules is missing.
# 3. Runs every test (unit + integration) with `cargo test --locked` and exits with its status;
#    with no arguments also, first, formatting (`cargo fmt --check`), lints (`cargo clippy
#    --all-targets -D warnings`) and the documentation (`cargo doc`, warnings denied), and after
#    the tests the Secret Service test (in a private D-Bus session) and a type-check of the fuzz
#    targets (fuzz/).
#    Extra arguments go to cargo, e.g. `./tests/run.sh --test it login`. On x86_64 Linux with
#    glibc, koidc is built and tested as ./install.sh builds it: statically linked
#    (`--target HOST --config .cargo/static.toml`, from .cargo/release.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly PACKAGES=(keyutils gnome-keyring dbus libdbus-1-dev libc6-dev pkg-config python3 strace
  tinyproxy maven unzip)

install_missing_packages() {
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "tests/run.sh: no dpkg here; make sure these are installed: ${PACKAGES[*]}" >&2
    return 0
  fi
  local p status missing=()
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg -s "$p" 2>/dev/null || true)
    [[ $status == *$'\nStatus: install ok installed'* ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0

  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
      echo "tests/run.sh: missing packages (${missing[*]}) and not root; install them first" >&2
      exit 1
    }
    sudo=(sudo -n)
  fi
  echo "tests/run.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_missing_packages

tests/e2e/deps.sh all
eval "$(tests/e2e/deps.sh --print-env all)"

# The Okta-like test IdP of tests/it/okta.rs: the npm `oidc-provider` package, pinned by
# tests/okta/package-lock.json (Node.js 20+ is needed; node_modules is installed only once).
if [[ ! -d tests/okta/node_modules ]]; then
  command -v npm >/dev/null 2>&1 || {
    echo "tests/run.sh: npm (Node.js 20 or later) is needed for the Okta tests (tests/okta)" >&2
    exit 1
  }
  (cd tests/okta && npm ci --no-audit --no-fund)
fi

# shellcheck source=.cargo/release.sh
. .cargo/release.sh
koidc_cargo_options static.toml

# The whole suite also checks formatting, lints and the developer documentation (links
# included), with the same build flags as the tests, so the checks share their build.
if (($# == 0)); then
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || {
      echo "tests/run.sh: cargo fmt and cargo clippy are needed (rustfmt and clippy components)" >&2
      exit 1
    }
    rustup component add rustfmt clippy
  fi
  cargo fmt --check
  cargo clippy --locked "${koidc_cargo_args[@]}" --all-targets -- -D warnings
  RUSTDOCFLAGS="-D warnings" cargo doc --locked "${koidc_cargo_args[@]}" --no-deps --document-private-items
fi

cargo test --locked "${koidc_cargo_args[@]}" "$@"

# The Secret Service unit test needs a session bus with an unlocked keyring: run it in a private
# D-Bus session with a throw-away gnome-keyring (its files under a temporary XDG_DATA_HOME). It is
# selected by exact name, so "1 passed" is required: a renamed test would otherwise run nothing.
if (($# == 0)); then
  keyring_data=$(mktemp -d)
  trap 'rm -rf "$keyring_data"' EXIT
  XDG_DATA_HOME=$keyring_data dbus-run-session -- bash -c \
    'echo koidc | gnome-keyring-daemon --components=secrets --unlock --daemonize >/dev/null &&
     cargo test --locked "$@" --lib login::cache::keyring::tests::secret_service_round_trip -- --ignored --exact' \
    bash "${koidc_cargo_args[@]}" \
    2> >(grep -v "Failed to set fd limit" >&2) | tee "$keyring_data/out"
  grep -q "test result: ok. 1 passed" "$keyring_data/out" || {
    echo "tests/run.sh: the Secret Service test did not run (no \"1 passed\")" >&2
    exit 1
  }

  # The fuzz targets (fuzz/) are built by fuzz/run.sh with nightly Rust and cargo-fuzz, which
  # this suite does not need: type-check them with the stable compiler instead (no linking, so
  # no libFuzzer runtime), so that a change to the functions they call cannot break them unseen.
  # Their own workspace and lock file; the check artefacts stay under target/.
  cargo check --locked --quiet --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check
fi
