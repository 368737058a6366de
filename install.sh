#!/usr/bin/env bash
# Installs koidc: build dependencies (Debian/Ubuntu packages), the release binary, and a
# `kubectl-koidc` link so `kubectl koidc ...` works; then, where the prefix allows, the man pages
# and the bash completion.
#
#   ./install.sh                 # to /usr/local/bin as root, else ~/.local/bin
#   KOIDC_BIN_DIR=/opt/bin ./install.sh
#   KOIDC_PIE=1 ./install.sh     # position-independent static build (docs/security.md)
#
# On x86_64 Linux with glibc the binary is linked statically (.cargo/static.toml): it starts
# faster, which kubectl pays on every command, and needs no particular glibc. Elsewhere it is
# cargo's default build.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'install.sh: %s\n' "$*" >&2; }

need_pkgs=()
for pkg in libdbus-1-dev libc6-dev pkg-config gcc; do
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

# shellcheck source=.cargo/release.sh
. .cargo/release.sh
config=static.toml
[ "${KOIDC_PIE:-0}" = 1 ] && config=static-pie.toml
koidc_cargo_options "$config"
if ((${#koidc_cargo_args[@]})); then
  say "building koidc (release, statically linked: .cargo/$config)"
else
  say "building koidc (release)"
fi
koidc_release_build "$config"

if [ -n "${KOIDC_BIN_DIR:-}" ]; then
  bin_dir=$KOIDC_BIN_DIR
elif [ "$(id -u)" -eq 0 ]; then
  bin_dir=/usr/local/bin
else
  bin_dir=$HOME/.local/bin
fi
mkdir -p "$bin_dir"
install -m 0755 "$koidc_release_bin" "$bin_dir/koidc.new"
mv -f "$bin_dir/koidc.new" "$bin_dir/koidc"
ln -sf koidc "$bin_dir/kubectl-koidc"
say "installed $bin_dir/koidc and $bin_dir/kubectl-koidc"

# Optional extras under the prefix (the bin directory's parent: /usr/local or ~/.local), only
# where its share/ directory exists and is writable; they never fail the installation.
#   man pages:        $prefix/share/man/man1/koidc.1, koidc-<command>.1
#   bash completion:  $prefix/share/bash-completion/completions/koidc (when bash-completion is
#                     installed: it loads that directory on demand)
install_extras() {
  local prefix share
  prefix=$(dirname "$bin_dir")
  share=$prefix/share
  [ -d "$share" ] && [ -w "$share" ] || return 0
  if mkdir -p "$share/man/man1" 2>/dev/null &&
    "$bin_dir/koidc" man --out-dir "$share/man/man1" 2>/dev/null; then
    say "installed the manual pages to $share/man/man1 (man koidc)"
  fi
  if [ -e /usr/share/bash-completion/bash_completion ] &&
    mkdir -p "$share/bash-completion/completions" 2>/dev/null &&
    "$bin_dir/koidc" completions bash >"$share/bash-completion/completions/koidc.new" 2>/dev/null; then
    mv -f "$share/bash-completion/completions/koidc.new" "$share/bash-completion/completions/koidc"
    say "installed bash completion to $share/bash-completion/completions/koidc"
  fi
}
install_extras || say "note: could not install the manual pages or the bash completion (koidc itself is installed)"
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) say "note: $bin_dir is not on PATH; add it, e.g. export PATH=\"$bin_dir:\$PATH\"" ;;
esac
"$bin_dir/koidc" --version
