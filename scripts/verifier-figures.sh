#!/usr/bin/env bash
# Reproduces the on-disk verifier figures of docs/performance.md, 1 GiB on
# loopback from one seeder (page cache warm):
#   - fetch wall time and "last chunk to receipt" (the receipt's finish_ms),
#     alternating an older binary (OLD, optional) with this one;
#   - re-reading a finished 1 GiB file (`fetch --recheck` on a complete
#     download) against one `openssl dgst -sha256` pass.
# Usage: scripts/verifier-figures.sh [RUNS, default 3] [OLD_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
old=${2:-}
cargo build --release -q -p minimodel
new=$PWD/target/release/minimodel
work=$(mktemp -d)
seeder=
cleanup() { [ -n "$seeder" ] && kill -INT "$seeder" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
"$new" fixture big.slm --size 1GiB --seed 1 >/dev/null
"$new" manifest big.slm --model-id big --publisher-id bench \
    --license-route https://example.org/l --evidence-route https://example.org/e -o big.manifest >/dev/null
cat big.slm >/dev/null
"$new" seed big.manifest big.slm --listen 127.0.0.1:0 --yes --offer s.json >/dev/null 2>&1 &
seeder=$!
for _ in $(seq 600); do [ -f s.json ] && break; sleep 0.1; done
fetch() { # label binary
    rm -rf out
    /usr/bin/time -f "%e" -o t.out "$2" fetch big.manifest --offer s.json -o out --yes >/dev/null 2>&1
    python3 - "$1" "$(cat t.out)" <<'PY'
import json, sys
r = json.load(open("out/big.receipt.json"))["source"]
print(f"{sys.argv[1]:<10} wall {float(sys.argv[2]):6.2f} s  last chunk to receipt {r['finish_ms']:5d} ms  "
      f"({100 * r['finish_ms'] / r['duration_ms']:.1f}% of {r['duration_ms']} ms)")
PY
}
echo "== 1 GiB fetch, one seeder, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$runs"); do
    [ -n "$old" ] && fetch old "$old"
    fetch new "$new"
done
echo "== re-reading the finished file"
for _ in $(seq "$runs"); do
    /usr/bin/time -f "openssl    %e s" openssl dgst -sha256 out/big.slm >/dev/null
    /usr/bin/time -f "recheck    %e s" "$new" fetch big.manifest --offer s.json -o out --recheck --yes >/dev/null
done 2>&1
