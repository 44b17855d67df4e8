#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60) on its
# corpus (fuzz/corpus/<target>: the tracked seed-* files plus whatever
# earlier runs found), then prints, per target, the executions and the
# crashes found. Exits 1 if any target crashed; the crashing inputs are in
# fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS]
#
# FUZZ_PROFILE=dev builds without optimisation: a third of the build time,
# a twentieth of the executions per second. `.ci/run` uses it, to stay
# short; the default is release.
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and a C++ compiler;
# libFuzzer's sanitizer flags are nightly features, enabled on the stable
# toolchain with RUSTC_BOOTSTRAP=1. Without cargo-fuzz it fails (exit 2):
# it never falls back to building the targets only.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2 ;;
esac
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

profile=()
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
  profile=(--dev)
fi

targets=$(cargo fuzz list)
echo "== build (all targets)"
cargo fuzz build "${profile[@]}"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
crashed=0
report=""
for target in $targets; do
  echo "== $target: ${seconds} s"
  mkdir -p "corpus/$target" "artifacts/$target"
  before=$(find "artifacts/$target" -type f | wc -l)
  status=0
  cargo fuzz run "${profile[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$logs/$target" 2>&1 || status=$?
  after=$(find "artifacts/$target" -type f | wc -l)
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target" | tail -n 1)
  if [ -z "$executions" ]; then
    # A crash ends the run before the final stats: take the last status line.
    executions=$(grep -o '^#[0-9]*' "$logs/$target" | tail -n 1 | tr -d '#')
  fi
  crashes=$((after - before))
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    crashed=1
    [ "$crashes" -gt 0 ] || crashes=1
    tail -n 40 "$logs/$target"
  fi
  report+=$(printf '%-16s %14s %8s' "$target" "${executions:-0}" "$crashes")$'\n'
done

echo
printf '%-16s %14s %8s\n' target executions crashes
printf '%s' "$report"
exit "$crashed"
