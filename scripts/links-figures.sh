#!/usr/bin/env bash
# CPU per delivered GiB of a fetch with many links against one with few
# (docs/performance.md, "A thousand peers"): N seeders on loopback, each on
# an address of its own /24 (127.0.K.1), one fetch given every offer and
# `--max-peers N`, so that it holds a link to each. Prints, per run, the
# distinct peers it connected to, its wall time and its CPU (user +
# system) per GiB. The counts run in turn against one set of seeders (the
# first N of them).
# Usage: scripts/links-figures.sh [SIZE, default 1GiB] [RUNS, default 3] [N...]
#        (default N: 4 200)
# PIN=0 (the default): every process on any CPU. PIN=1: the seeders on
# the first CPU and the fetch on the second (taskset), so that the
# seeders, which in a real swarm run on other machines, do not run between
# the fetch's steps on its core and evict its caches. PIN=alt: both, in
# turn, run after run. The CPU counted is the fetch's either way.
# NET=netns (root): every process runs in a network namespace made for
# the run, the seeders listening on 10.77.K.1, addresses of its loopback
# interface, instead of 127.0.K.1. The packets go through a loopback as
# before, but the transport treats the peers as any peers and discovers
# path MTUs up to 1452 bytes, as on a real network; to a 127.x peer it
# climbs to 21800 bytes (6500 before 2026-11-27), which a real network
# does not carry.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1GiB}
runs=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(4 200)
cargo build --release -q -p minimodel
bin=$PWD/target/release/minimodel
read -r -a fetch_bins <<< "${FETCH_BINS:-$bin}"
work=$(mktemp -d)
seeders=()
# FETCH_BINS="A B ...": fetch with each of these binaries in turn (to
# compare builds against the same seeders); by default the fresh release
# build, which also seeds.
# SIGTERM: a seeder still verifying the file has no handler yet, and a
# job started with & in a script ignores SIGINT.
stop_seeders() {
    for pid in "${seeders[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${seeders[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    seeders=()
}
cleanup() {
    stop_seeders
    [ "${NET:-loopback}" = netns ] && ip netns del mmlinks 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
ulimit -n 65536 2>/dev/null || true

case "${PIN:-0}" in
    0) pins=(0) ;;
    1) pins=(1) ;;
    alt) pins=(0 1) ;;
    *) echo "PIN is 0, 1 or alt" >&2; exit 2 ;;
esac
[ "${PIN:-0}" = 0 ] || [ "$(nproc)" -ge 2 ] || { echo "PIN=${PIN} needs two CPUs" >&2; exit 2; }
echo "== $(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d), load $(cut -d' ' -f1-3 /proc/loadavg), PIN=${PIN:-0}, NET=${NET:-loopback}"
"$bin" fixture big.slm --size "$size" --seed 1 >/dev/null
"$bin" manifest big.slm --model-id big --publisher-id bench \
    --license-route https://example.org/l --evidence-route https://example.org/e -o big.manifest >/dev/null
cat big.slm >/dev/null
gib=$(python3 -c "import os; print(os.path.getsize('big.slm') / 2**30)")

most=$(printf '%s\n' "${counts[@]}" | sort -n | tail -1)
[ "$most" -le 255 ] || { echo "at most 255 seeders (one /24 each)" >&2; exit 2; }
in_net=()
case "${NET:-loopback}" in
    loopback) net=127.0 ;;
    netns)
        net=10.77
        ip netns add mmlinks
        ip -n mmlinks link set lo up
        for k in $(seq "$most"); do ip -n mmlinks addr add "10.77.$k.1/32" dev lo; done
        in_net=(ip netns exec mmlinks)
        ;;
    *) echo "NET is loopback or netns" >&2; exit 2 ;;
esac
for k in $(seq "$most"); do
    "${in_net[@]}" "$bin" seed big.manifest big.slm --listen "$net.$k.1:0" --no-port-mapping --yes -q \
        --offer "s$k.json" >/dev/null 2>"s$k.err" &
    seeders+=($!)
done
for k in $(seq "$most"); do
    for _ in $(seq 1200); do
        [ -s "s$k.json" ] && break
        kill -0 "${seeders[$((k - 1))]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "s$k.json" ] || { echo "seeder $k did not start: $(cat "s$k.err")" >&2; exit 1; }
done
# The seeders verified the file as they started: let that load pass.
sleep 20
# The counts in turn, run after run, so that each sees the same machine.
last=$(( $(nproc) - 1 ))
for _ in $(seq "$runs"); do
    for pin in "${pins[@]}"; do
        # Pinned once they serve (their start-up checks use every CPU):
        # every thread of each seeder.
        fetch_cpu=()
        seed_cpus="0-$last"
        if [ "$pin" = 1 ]; then
            fetch_cpu=(taskset -c 1)
            seed_cpus=0
        fi
        for pid in "${seeders[@]}"; do taskset -a -p -c "$seed_cpus" "$pid" >/dev/null; done
        for fetch_bin in "${fetch_bins[@]}"; do
        for n in "${counts[@]}"; do
            offers=()
            for k in $(seq "$n"); do offers+=(--offer "s$k.json"); done
            rm -rf out
            "${fetch_cpu[@]}" "${in_net[@]}" /usr/bin/time -f "%e %U %S %M" -o time.out "$fetch_bin" fetch big.manifest \
                "${offers[@]}" --max-peers "$n" -o out --yes --json >fetch.log 2>fetch.err
            read -r wall user sys rss <time.out
            # Distinct peers it connected to (a reconnect counts once).
            links=$(grep '"event":"peer-connected"' fetch.log | grep -o '"peer":"[^"]*"' | sort -u | wc -l)
            label=""
            [ ${#fetch_bins[@]} -eq 1 ] || label="$(basename "$fetch_bin"), "
            printf '%spinned %d, %4d seeders: %4d peers, %6.2f s, CPU %5.2f s per GiB, peak RSS %6d KiB\n' \
                "$label" "$pin" "$n" "$links" "$wall" "$(echo "($user + $sys) / $gib" | bc -l)" "$rss"
        done
        done
    done
done
