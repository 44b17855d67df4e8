#!/usr/bin/env bash
# The companion's resident memory on loopback (docs/performance.md, "The
# companion on loopback"): one `companion run` with N shares of SIZE,
# idle, then while N one-shot `fetch TICKET` processes fetch one share
# each, all at once. Prints the RSS idle, the highest RSS sampled every
# 50 ms during the fetches, the RSS after them, and how long the fetches
# took.
#
#   scripts/companion-rss.sh [BIN] [N] [SIZE]
#
# BIN defaults to target/release/minimodel, N to 20, SIZE to 4MiB.
set -euo pipefail

bin=$(realpath "${1:-target/release/minimodel}")
count=${2:-20}
size=${3:-4MiB}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release -p minimodel)" >&2; exit 2; }

work=$(mktemp -d)
companion=
cleanup() {
  [ -n "$companion" ] && kill "$companion" 2>/dev/null && wait "$companion" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }

library="$work/library"
"$bin" -q companion run --library "$library" --api 127.0.0.1:0 --serve-ip 127.0.0.1 \
  >"$work/companion.out" 2>"$work/companion.err" &
companion=$!
for _ in $(seq 100); do [ -f "$library/api.json" ] && break; sleep 0.1; done
[ -f "$library/api.json" ] || { cat "$work/companion.err" >&2; exit 1; }
idle_empty=$(rss "$companion")

for i in $(seq "$count"); do
  "$bin" -q fixture --size "$size" --seed "$i" "$work/m$i.slm"
  "$bin" -q manifest "$work/m$i.slm" --model-id "m$i" --publisher-id lab \
    --license-route https://example.org/license --evidence-route https://example.org/evidence \
    -o "$work/m$i.manifest"
  "$bin" -q companion share "$work/m$i.manifest" "$work/m$i.slm" --library "$library" --yes
done

# Every share serving, with its ticket.
tickets=()
for _ in $(seq 300); do
  mapfile -t tickets < <("$bin" --json companion list --library "$library" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    event = json.loads(line)
    item = event.get("item") or {}
    if item:
        serving = item.get("serving") or {}
        if item.get("state") == "serving" and serving.get("ticket"):
            print(serving["ticket"])
')
  [ "${#tickets[@]}" -ge "$count" ] && break
  sleep 0.1
done
[ "${#tickets[@]}" -ge "$count" ] || { echo "only ${#tickets[@]} of $count shares serve" >&2; exit 1; }
sleep 3
idle=$(rss "$companion")

start=$(date +%s.%N)
pids=()
for i in $(seq "$count"); do
  "$bin" -q fetch "${tickets[$((i - 1))]}" -o "$work/out$i" --yes >"$work/fetch$i.log" 2>&1 &
  pids+=($!)
done
peak=$idle
running=1
while [ "$running" = 1 ]; do
  now=$(rss "$companion")
  [ "$now" -gt "$peak" ] && peak=$now
  running=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
  sleep 0.05
done
failed=0
for index in "${!pids[@]}"; do
  if ! wait "${pids[$index]}"; then
    failed=$((failed + 1))
    # The first failure says why.
    [ "$failed" = 1 ] && { echo "fetch $((index + 1)) failed:" >&2; tail -3 "$work/fetch$((index + 1)).log" >&2; }
  fi
done
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
after=$(rss "$companion")
verified=$(find "$work" -name '*.receipt.json' -path "$work/out*" | wc -l)

echo "companion, no items:        $(mib "$idle_empty") MiB"
echo "idle with $count shares:       $(mib "$idle") MiB"
echo "highest during $count fetches: $(mib "$peak") MiB"
echo "after the fetches:          $(mib "$after") MiB"
echo "fetches verified: $verified of $count in ${took} s (failed: $failed)"
[ "$failed" = 0 ] && [ "$verified" = "$count" ]
