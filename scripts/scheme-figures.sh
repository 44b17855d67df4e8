#!/usr/bin/env bash
# The swarm figures with chunks cut at parts (docs/performance.md): one
# fixture, two manifests of it (fixed-size-merkle-v0 and slm-parts-merkle-v0,
# the default), then alternated runs of each:
#   - `minimodel verify` (wall, page cache warm);
#   - a fetch of it from one `minimodel seed` on loopback (wall; the fetch's
#     user + system CPU).
# The same binary, the same file and the same hour for both, each first in
# every other run: what differs is only how the manifest cuts the file (a
# listed fetch first reads the chunk list, with its lengths, from the
# seeder).
# Usage: scripts/scheme-figures.sh [SIZE, default 1GiB] [RUNS, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1GiB}
runs=${2:-5}
cargo build --release -q -p minimodel
bin=$PWD/target/release/minimodel
work=$(mktemp -d)
seed_pid=
cleanup() {
    [ -n "$seed_pid" ] && kill -INT "$seed_pid" 2>/dev/null || true
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
echo "== $(uname -m), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" -q fixture big.slm --size "$size" --seed 11 >/dev/null
common=(--model-id big --publisher-id lab --license-route https://example.org/license
    --evidence-route https://example.org/evidence)
"$bin" -q manifest big.slm "${common[@]}" --chunk-scheme fixed-size-merkle-v0 \
    -o fixed.manifest >/dev/null
"$bin" -q manifest big.slm "${common[@]}" --chunk-scheme slm-parts-merkle-v0 \
    --chunk-list-out parts.chunk-list -o parts.manifest >/dev/null
for scheme in fixed parts; do
    printf '%s: %s chunks of %s\n' "$scheme" \
        "$(sed -n 's/^chunk-count: //p' "$scheme.manifest")" \
        "$(sed -n 's/^chunk-size: //p' "$scheme.manifest")"
done
cat big.slm > /dev/null

fetch_once() { # scheme -> "wall cpu"
    local scheme=$1
    rm -rf out offer.json
    "$bin" -q seed "$scheme.manifest" big.slm --listen 127.0.0.1:0 --no-port-mapping \
        --yes --offer offer.json >/dev/null 2>&1 &
    seed_pid=$!
    while [ ! -s offer.json ]; do sleep 0.05; done
    /usr/bin/time -f "%e %U %S" -o time.out \
        "$bin" -q fetch "$scheme.manifest" --offer offer.json -o out --yes >/dev/null 2>&1
    kill -INT "$seed_pid"; wait "$seed_pid" 2>/dev/null || true; seed_pid=
    cmp -s out/big.slm big.slm || { echo "the fetched file differs" >&2; exit 1; }
    read -r wall user sys < time.out
    echo "$wall $(echo "$user + $sys" | bc)"
}
verify_once() { # scheme -> wall
    /usr/bin/time -f "%e" -o time.out "$bin" -q verify "$1.manifest" big.slm >/dev/null 2>&1
    cat time.out
}

declare -A walls cpus verifies
for run in $(seq 1 "$runs"); do
    # ABBA: each scheme goes first in every other run.
    order="fixed parts"
    [ $((run % 2)) = 0 ] && order="parts fixed"
    for scheme in $order; do
        read -r wall cpu < <(fetch_once "$scheme")
        v=$(verify_once "$scheme")
        walls[$scheme]+="$wall "
        cpus[$scheme]+="$cpu "
        verifies[$scheme]+="$v "
        printf 'run %d %-5s fetch %5.2f s (CPU %5.2f s)  verify %5.2f s\n' "$run" "$scheme" "$wall" "$cpu" "$v"
    done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for scheme in fixed parts; do
    printf '%-5s median: fetch %s s (CPU %s s), verify %s s\n' "$scheme" \
        "$(echo "${walls[$scheme]}" | median)" "$(echo "${cpus[$scheme]}" | median)" \
        "$(echo "${verifies[$scheme]}" | median)"
done
