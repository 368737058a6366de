#!/usr/bin/env bash
# The warm-path benchmark alone (kept for old instructions): bench/run.sh runs every benchmark
# and documents them; this runs only its `warm` section, e.g. `RUNS=200 bench/warm.sh`.
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" warm "$@"
