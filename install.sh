#!/usr/bin/env bash
# Installs koidc: build dependencies (Debian/Ubuntu packages), the release binary, and a
# `kubectl-koidc` link so `kubectl koidc ...` works.
#
#   ./install.sh                 # to /usr/local/bin as root, else ~/.local/bin
#   KOIDC_BIN_DIR=/opt/bin ./install.sh
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'install.sh: %s\n' "$*" >&2; }

need_pkgs=()
for pkg in libdbus-1-dev pkg-config gcc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  if ! command -v apt-get >/dev/null; then
    say "missing build packages (${need_pkgs[*]}) and no apt-get: install them with your package manager"
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing ${need_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  say "cargo not found: install Rust from https://rustup.rs first"
  exit 1
fi

say "building koidc (release)"
cargo build --release --locked --quiet

if [ -n "${KOIDC_BIN_DIR:-}" ]; then
  bin_dir=$KOIDC_BIN_DIR
elif [ "$(id -u)" -eq 0 ]; then
  bin_dir=/usr/local/bin
else
  bin_dir=$HOME/.local/bin
fi
mkdir -p "$bin_dir"
install -m 0755 target/release/koidc "$bin_dir/koidc.new"
mv -f "$bin_dir/koidc.new" "$bin_dir/koidc"
ln -sf koidc "$bin_dir/kubectl-koidc"
say "installed $bin_dir/koidc and $bin_dir/kubectl-koidc"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) say "note: $bin_dir is not on PATH; add it, e.g. export PATH=\"$bin_dir:\$PATH\"" ;;
esac
"$bin_dir/koidc" --version
