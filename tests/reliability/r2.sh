#!/usr/bin/env bash
# R2 (docs/benchmarks.md, "How to run"): disk full, from one command. Mounts a 48 MB tmpfs (needs root),
# puts the queue database on it and runs both variants through the real binary: (a) [back_pressure] disk thresholds inside the file
# system's size, (b) thresholds off, so that the database itself meets ENOSPC. Prints what was acknowledged,
# delivered and lost; exits non-zero if anything acknowledged was lost or the database was damaged.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$(mktemp -d /tmp/sluice-r2-XXXXXX)
mount -t tmpfs -o size=48m sluice-r2 "$dir"
trap 'umount "$dir" 2>/dev/null || umount -l "$dir"; rmdir "$dir"' EXIT
echo "== R2 on a 48 MB tmpfs at $dir"
SLUICE_R2_DIR="$dir" cargo test --release -p sluice --test it diskfull:: -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -E "R2|test result|panicked|lost"
