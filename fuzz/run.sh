#!/usr/bin/env bash
# Runs one fuzz target for a fixed budget; see fuzz/README.md. Not run in CI.
#
#   fuzz/run.sh TARGET [BUDGET]
#
# TARGET is a file name in fuzz/fuzz_targets/ (wire, config, safetensors, idx, cifar, leaf, image, device_trace). BUDGET is a
# number of inputs (10000000) or seconds with an `s` suffix (600s); default 60s. Installs
# cargo-fuzz if it is missing, writes the seed corpus if fuzz/corpus/TARGET is empty,
# builds on the stable toolchain without a sanitizer (with debug assertions and overflow
# checks), runs, and prints the executions, the rate and any crash. Exit status 1 means
# a crash was found: its input is in fuzz/artifacts/TARGET/.
set -euo pipefail

usage="usage: fuzz/run.sh TARGET [N_INPUTS | SECONDSs]"
target=${1:?$usage}
budget=${2:-60s}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
[[ -f fuzz_targets/$target.rs ]] || { echo "no target '$target' in fuzz/fuzz_targets/" >&2; exit 2; }
case $budget in
  *[0-9]s) limit=(-max_total_time="${budget%s}") ;;
  *[0-9]) limit=(-runs="$budget") ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

# The tool: cargo-fuzz from crates.io; libFuzzer itself is built from the libfuzzer-sys
# crate and needs a C++ compiler (Debian: g++).
if ! command -v c++ >/dev/null; then
  apt-get update && apt-get install -y g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [[ -z $(ls -A "corpus/$target" 2>/dev/null) ]]; then
  cargo run --release --example seeds -- corpus "$target"
fi

flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}" "$target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
set +e
cargo fuzz run "${flags[@]}" "$target" -- "${limit[@]}" -timeout=10 -print_final_stats=1 \
  2>&1 | tee "$log" | { grep --line-buffered -E '^#[0-9]+\s+(pulse|DONE)|^==|panicked|Test unit written' || true; }
status=${PIPESTATUS[0]}
set -e
wall=$(( $(date +%s) - start ))

runs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" || echo "?")
crash=$(grep -oP 'Test unit written to \K\S+' "$log" || true)
echo "target=$target executions=$runs wall_s=$wall exec_per_s=$rate crashes=$([[ -n $crash ]] && echo 1 || echo 0)"
if [[ -n $crash ]]; then
  echo "crash input: $crash (reproduce: cd fuzz && cargo fuzz run ${flags[*]} $target $crash)"
  exit 1
fi
exit "$status"
