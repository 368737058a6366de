# shellcheck shell=bash
# How koidc's release binary is built on this host, for the scripts that build it (install.sh,
# tests/run.sh, bench/run.sh; sourced, from the repository root): on x86_64 Linux with glibc,
# statically linked with .cargo/static.toml (or .cargo/static-pie.toml); elsewhere cargo's
# default build.

# koidc_cargo_options CONFIG: sets the array koidc_cargo_args to `--target HOST --config
# .cargo/CONFIG` where the static build applies, else to nothing; koidc_host to the host triple.
koidc_cargo_options() {
  koidc_host=$(rustc -vV | sed -n 's/^host: //p')
  case $koidc_host in
    x86_64-unknown-linux-gnu) koidc_cargo_args=(--target "$koidc_host" --config ".cargo/$1") ;;
    *) koidc_cargo_args=() ;;
  esac
}

# koidc_release_build CONFIG [TARGET_DIR]: `cargo build --release` with those options (into
# TARGET_DIR instead of cargo's target directory, which CARGO_TARGET_DIR may move); sets
# koidc_release_bin to the binary's path.
# shellcheck disable=SC2034 # koidc_release_bin is for the sourcing script
koidc_release_build() {
  local dir=${2:-${CARGO_TARGET_DIR:-target}} into=()
  [ -z "${2:-}" ] || into=(--target-dir "$2")
  koidc_cargo_options "$1"
  cargo build --release --locked --quiet "${koidc_cargo_args[@]}" "${into[@]}"
  if ((${#koidc_cargo_args[@]})); then
    koidc_release_bin=$dir/$koidc_host/release/koidc
  else
    koidc_release_bin=$dir/release/koidc
  fi
}
