#!/usr/bin/env bash
# Instructions the simulator spends per delivered chunk, counted by
# valgrind's callgrind inside `Sim::run` only (docs/performance.md, "A
# thousand peers"). Unlike the scale test's microseconds per chunk, which
# move up to 2 x between hours on a shared machine, the count is the same
# on every run of one build: it compares two builds, or two crowd sizes,
# without noise. It does not see the caches: what a crowd's memory costs
# beyond its instructions shows only in the wall time.
# Usage: scripts/sim-instructions.sh [CHUNKS, default 128] [PEERS...]
#        (default PEERS: 10 30 100; callgrind runs about 50 x slower than
#        the test, so 300 peers take about ten minutes)
# Needs valgrind (Debian: apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
chunks=${1:-128}
shift $(( $# < 1 ? $# : 1 ))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 30 100)
command -v valgrind > /dev/null || { echo "valgrind is not installed" >&2; exit 2; }
bin=$(cargo test --release -p minimodel-node --no-run --message-format=json 2> /dev/null \
    | grep -o '"executable":"[^"]*minimodel_node-[^"]*"' | cut -d'"' -f4 | head -n 1)
[ -x "$bin" ] || { echo "no test binary of minimodel-node" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%6s %8s %10s %16s %12s %12s\n' peers chunks delivered instructions "per chunk" "per event"
for peers in "${sizes[@]}"; do
    NETSIM_PEERS=$peers NETSIM_CHUNKS=$chunks valgrind --tool=callgrind \
        --callgrind-out-file="$work/cg.out" --toggle-collect='*netsim*Sim*run*' \
        "$bin" netsim::scale::a_flash_crowd --nocapture --test-threads 1 > "$work/log" 2>&1 \
        || { tail -n 20 "$work/log" >&2; exit 1; }
    total=$(grep -oE 'Collected : [0-9]+' "$work/log" | grep -oE '[0-9]+$')
    finished=$(grep -oE 'finished [0-9]+/[0-9]+' "$work/log" | head -n 1 | grep -oE '[0-9]+' | head -n 1)
    events=$(grep -oE '[0-9.]+ events and' "$work/log" | head -n 1 | grep -oE '^[0-9.]+')
    delivered=$(( finished * chunks ))
    awk -v p="$peers" -v c="$chunks" -v d="$delivered" -v t="$total" -v e="$events" \
        'BEGIN { printf "%6d %8d %10d %16.0f %11.1fk %11.1fk\n", p, c, d, t, t / d / 1000, t / d / e / 1000 }'
done
