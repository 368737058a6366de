#!/usr/bin/env bash
# Runs every cargo-fuzz target of koidc for a fixed time budget and prints one summary line per
# target (executions, coverage, corpus size, crashes). The figures in docs/security.md come from
# this script.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs a nightly toolchain (libFuzzer's coverage instrumentation is a nightly-only rustc flag)
# and cargo-fuzz; both are installed when missing (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz` from crates.io). The committed seeds in fuzz/corpus/<target>/ are
# read but never written: what the fuzzer learns goes to a temporary corpus, and a crash goes to
# fuzz/artifacts/<target>/ (ignored by git) and fails the script.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly SECONDS_PER_TARGET=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(exec_info callback_query callback_answer jwt_payload cache_entry)

rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cargo +nightly fuzz build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
printf '%-15s %8s %12s %10s %6s %6s %7s %s\n' target seconds executions exec/s cov ft corpus crashes
for target in "${targets[@]}"; do
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  log="$work/$target.log"
  # -seed fixed so that a run can be repeated; -rss_limit_mb well under the machine's memory.
  if cargo +nightly fuzz run "$target" "$work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -seed=1 -rss_limit_mb=4096 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
    tail -n 40 "$log" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  printf '%-15s %8s %12s %10s %6s %6s %7s %s\n' "$target" "$SECONDS_PER_TARGET" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$crashes"
done
exit "$status"
