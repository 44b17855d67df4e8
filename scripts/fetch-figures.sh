#!/usr/bin/env bash
# Reproduces the local hashing and download figures of docs/performance.md:
# one 1 GiB fixture (page cache warm), then
#   - openssl dgst -sha256, minimodel manifest and minimodel verify (wall, RSS);
#   - fetch from 1 seeder and from 4 seeders on loopback, alternated, with
#     the spread and median of each (wall, MB/s, the
#     part after the last chunk, the CPU of the fetch and of the seeders
#     during it, peak RSS of fetch and of a seeder);
#   - the raw QUIC ceiling between two processes (transport_bulk example).
# Usage: scripts/fetch-figures.sh [SIZE, default 1GiB] [RUNS, default 3]
#   MINIMODEL_BIN=PATH: time that binary, built already (and no raw QUIC
#   figure, whose example is built with the project).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1GiB}
runs=${2:-3}
if [ -z "${MINIMODEL_BIN:-}" ]; then
    cargo build --release -q -p minimodel
    cargo build --release -q -p minimodel-swarm --example transport_bulk
fi
bin=${MINIMODEL_BIN:-$PWD/target/release/minimodel}
work=$(mktemp -d)
seeders=()
cleanup() {
    stop_seeders
    sleep 0.5
    rm -rf "$work"
}
# Each seeder runs under /usr/bin/time, which ignores SIGINT: signal its
# child, the seeder itself.
stop_seeders() {
    for pid in "${seeders[@]:-}"; do
        [ -n "$pid" ] && pkill -INT -P "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
cd "$work"

timed() { # label command... ; prints "label wall_s rss_kb"
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null 2>&1
    read -r wall rss < time.out
    printf '%-28s %8.2f s %8d KiB\n' "$label" "$wall" "$rss"
}

echo "== $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" fixture big.slm --size "$size" --seed 1 >/dev/null
cat big.slm >/dev/null
echo "== hashing (page cache warm), $size"
for _ in $(seq "$runs"); do
    timed "openssl dgst -sha256" openssl dgst -sha256 big.slm
    timed "minimodel manifest" "$bin" manifest big.slm --model-id big --publisher-id bench \
        --license-route https://example.org/l --evidence-route https://example.org/e -o big.manifest
    timed "minimodel verify" "$bin" verify big.manifest big.slm --receipt verify.json
done

start_seeder() { # name -> pid, waits for its offer
    rm -f "$1.json"
    /usr/bin/time -f "%M" -o "$1.rss" "$bin" seed big.manifest big.slm --listen 127.0.0.1:0 \
        --yes --offer "$1.json" >/dev/null 2>&1 &
    seeders+=($!)
    for _ in $(seq 600); do [ -f "$1.json" ] && return; sleep 0.1; done
    echo "seeder $1 did not start" >&2; exit 1
}

# The CPU ticks (user + system) of the running seeders themselves (each
# is the child of its /usr/bin/time).
seeder_ticks() {
    local total=0 pid child
    for pid in "${seeders[@]}"; do
        child=$(pgrep -P "$pid" | head -1 || true)
        # A seeder gone would leave its CPU out of the figure unsaid.
        [ -n "$child" ] || { echo "seeder under $pid is not running" >&2; exit 1; }
        total=$((total + $(awk '{print $14 + $15}' "/proc/$child/stat")))
    done
    echo "$total"
}

fetch_run() { # label offers...
    local label=$1; shift
    local args=()
    for offer in "$@"; do args+=(--offer "$offer"); done
    rm -rf out
    # The fixture in the page cache, the last run's writes on disk.
    cat big.slm >/dev/null
    sync
    local before after
    before=$(seeder_ticks)
    /usr/bin/time -f "%e %U %S %M" -o time.out "$bin" fetch big.manifest "${args[@]}" -o out --yes --json >fetch.log 2>&1
    after=$(seeder_ticks)
    read -r wall user sys rss < time.out
    local bytes finish cpu seeds
    bytes=$(stat -c %s out/big.slm)
    finish=$(python3 -c 'import json,sys; r=json.load(open("out/big.receipt.json")); print(r["source"]["finish_ms"], r["source"]["duration_ms"])')
    cpu=$(echo "$user + $sys" | bc -l)
    seeds=$(echo "($after - $before) / $(getconf CLK_TCK)" | bc -l)
    printf '%-28s %8.2f s %8.0f MB/s  after last chunk %5s ms of %6s ms  CPU fetch %.2f s seeders %.2f s both %.2f s  fetch RSS %6d KiB\n' \
        "$label" "$wall" "$(echo "$bytes / $wall / 1000000" | bc -l)" ${finish} \
        "$cpu" "$seeds" "$(echo "$cpu + $seeds" | bc -l)" "$rss"
    # The same figures for the summary: seeders, wall, CPU fetch, seeders, both, RSS.
    echo "$#" "$wall" "$cpu" "$seeds" "$(echo "$cpu + $seeds" | bc -l)" "$rss" >> runs.txt
}

echo "== fetch on loopback, $size (one seeder and four alternated; the other three idle during a run from one)"
start_seeder s0; start_seeder s1; start_seeder s2; start_seeder s3
for _ in $(seq "$runs"); do
    fetch_run "1 seeder" s0.json
    fetch_run "4 seeders" s0.json s1.json s2.json s3.json
done
stop_seeders
python3 - runs.txt <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for label in ("1", "4"):
    runs = [row for row in rows if row[0] == label]
    def spread(values):
        return f"{min(values):.2f} to {max(values):.2f} (median {statistics.median(values):.3f})"
    wall, fetch, seeders, both = ([float(row[i]) for row in runs] for i in (1, 2, 3, 4))
    rss = [int(row[5]) / 1024 for row in runs]
    print(f"{label} seeder(s), {len(runs)} runs: wall {spread(wall)} s; CPU fetch {spread(fetch)} s, "
          f"seeders {spread(seeders)} s, both {spread(both)} s; fetch RSS {min(rss):.1f} to {max(rss):.1f} MiB")
PY
wait 2>/dev/null || true
seeders=()
for s in s0 s1 s2 s3; do printf 'seeder %s peak RSS %s KiB\n' "$s" "$(tail -1 $s.rss)"; done

[ -z "${MINIMODEL_BIN:-}" ] || exit 0
echo "== raw QUIC ceiling (two processes, 1 GiB)"
cd - >/dev/null
for _ in $(seq "$runs"); do
    target/release/examples/transport_bulk --bytes 1024 2>&1 | tail -1
done
