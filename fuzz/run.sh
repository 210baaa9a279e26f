#!/usr/bin/env bash
# Fuzzes each target (all of them, or those named) for SECONDS, one after
# another at the lowest priority, then minimizes its corpus in place
# (fuzz/corpus/TARGET). Stops at the first target that finds something;
# the input is in fuzz/artifacts/TARGET. Needs `cargo install cargo-fuzz`.
#
#   fuzz/run.sh 600                  # ten minutes each
#   fuzz/run.sh 30 frame session     # a quick look at two
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    # -s none: no sanitizer, so stable Rust builds it (the crate forbids unsafe code).
    nice -n 19 cargo fuzz run -s none "$target" -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1
    nice -n 19 cargo fuzz cmin -s none "$target" -- -set_cover_merge=1 -use_counters=0
done
