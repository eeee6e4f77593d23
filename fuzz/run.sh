#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer (cargo-fuzz, nightly), starting from
# the seeds in fuzz/seeds. Installs cargo-fuzz when it is missing; needs a nightly toolchain.
# A failure leaves the input in fuzz/artifacts/<target>/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in command data bdat recover filter; do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  # recover: the writer's sync threads are detached and end just after it; their thread-local state reads
  # as a leak to LeakSanitizer when an input ends first.
  # recover is built with debug assertions too: an integer overflow on a crafted file is a panic, a finding.
  extra=() build=()
  [ "$target" = recover ] && extra=(-detect_leaks=0) && build=(--debug-assertions)
  echo "== fuzz $target for ${seconds}s"
  cargo +nightly fuzz run "${build[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "${extra[@]}" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+== ERROR|SUMMARY)|panicked" || true
  [ -z "$(ls -A "artifacts/$target" 2>/dev/null)" ] || { echo "fuzz $target found a failing input: fuzz/artifacts/$target" >&2; exit 1; }
done
