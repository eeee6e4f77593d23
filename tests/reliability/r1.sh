#!/usr/bin/env bash
# R1 (docs/benchmarks.md, "How to run"): crash safety under load, from one command.
#   tests/reliability/r1.sh          CI size: 20 SIGKILL cycles, 40 seeds per storage-fault test
#   tests/reliability/r1.sh long     the long run: 200 SIGKILL cycles over 30,000 messages, 2,000 seeds
# Prints each suite's summary; exits non-zero if anything acknowledged was lost.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = long ]; then
  export SLUICE_KILL_CYCLES=200 SLUICE_KILL_MESSAGES=30000 SLUICE_CRASH_SEEDS=2000
fi
echo "== queue database: random crashes, crashes during rotation/checkpoint/retirement, failed writes and syncs"
cargo test --release -p sluice-queue-db --test it -- --nocapture
echo "== the real binary: SIGKILL during SMTP injection with deliveries flowing"
cargo test --release -p sluice --test it crash:: -- --nocapture 2>&1 | grep -E "R1|test result|panicked|lost"
