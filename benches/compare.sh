#!/usr/bin/env bash
# Compares a minimodel download with the tools people would use instead, on
# this machine, on loopback, with the same file: rqbit (BitTorrent over TCP),
# sendme (iroh-blobs over QUIC) and one `openssl dgst -sha256` pass of the
# file as the hashing floor. What is timed, and the figures: the
# "Comparison" section of docs/performance.md.
#
#   benches/compare.sh [--sizes "256MiB 1GiB"] [--with-4gib] [--runs N]
#                      [--work DIR] [--tools DIR] [--skip-rqbit]
#                      [--skip-sendme] [--no-build]
#
# rqbit and sendme are installed with `cargo install --locked` into the tools
# directory (default target/compare-tools), once, and reused on later runs;
# they are only measured, never part of the project. The measurements run in
# a private network namespace that has nothing but loopback, so no tool can
# reach anything beyond this machine (DHT, trackers, relays, discovery).

set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES="256MiB 1GiB"
RUNS=1
WORK="$ROOT/target/compare"
TOOLS="$ROOT/target/compare-tools"
SKIP_RQBIT=0
SKIP_SENDME=0
BUILD=1
INSIDE=0
ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES=$2; shift 2 ;;
        --with-4gib) SIZES="$SIZES 4GiB"; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --skip-rqbit) SKIP_RQBIT=1; shift ;;
        --skip-sendme) SKIP_SENDME=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --inside-namespace) INSIDE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

MM="$ROOT/target/release/minimodel"
RQBIT="$TOOLS/bin/rqbit"
SENDME="$TOOLS/bin/sendme"

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- preparation
# Outside the namespace: builds and installs need crates.io.
if [ "$INSIDE" = 0 ]; then
    for tool in /usr/bin/time openssl unshare ip curl cmp; do
        command -v "$tool" > /dev/null || { say "missing $tool"; exit 1; }
    done
    if [ "$BUILD" = 1 ]; then
        say "building minimodel (release)"
        (cd "$ROOT" && cargo build --release --quiet -p minimodel)
    fi
    [ -x "$MM" ] || { say "no $MM: run without --no-build"; exit 1; }
    mkdir -p "$TOOLS"
    install_tool() { # name binary
        if [ ! -x "$2" ]; then
            say "installing $1 into $TOOLS (once; this takes a while)"
            cargo install "$1" --locked --root "$TOOLS" --quiet
        fi
    }
    [ "$SKIP_RQBIT" = 1 ] || install_tool rqbit "$RQBIT"
    [ "$SKIP_SENDME" = 1 ] || install_tool sendme "$SENDME"
    # A private network namespace with only loopback; as root directly,
    # otherwise inside a user namespace.
    if unshare -n true 2> /dev/null; then
        exec unshare -n -- "$0" "${ARGS[@]}" --no-build --inside-namespace
    elif unshare -rn true 2> /dev/null; then
        exec unshare -rn -- "$0" "${ARGS[@]}" --no-build --inside-namespace
    fi
    say "cannot create a network namespace (unshare -n); refusing to run the"
    say "peer-to-peer tools on the host network"
    exit 1
fi

# ------------------------------------------------------------ the measurement
ip link set lo up

STARTED=()
cleanup() {
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
}
trap cleanup EXIT

now_ns() { date +%s%N; }
seconds_since() { awk -v s="$1" -v e="$(now_ns)" 'BEGIN { printf "%.3f\n", (e - s) / 1e9 }'; }
wait_for() { # what, seconds, test command...
    local what=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        if [ $SECONDS -ge $deadline ]; then
            say "timed out waiting for $what"
            return 1
        fi
        sleep 0.05
    done
}
# Peak RSS in KiB as written by /usr/bin/time -f %M -o FILE.
rss_of() { tail -n 1 "$1"; }
# The pid of the only child of a /usr/bin/time process.
child_of() { pgrep -P "$1" | head -n 1; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
same_file() { cmp -s "$1" "$2" || { say "$2 differs from $1"; return 1; }; }
# Before each timed transfer: the source in the page cache, no writeback
# of an earlier run pending.
settle() { cat "$1" > /dev/null; sync; }

# openssl: one SHA-256 pass over the file from the page cache.
run_openssl() { # file
    settle "$1"
    local start
    start=$(now_ns)
    openssl dgst -sha256 "$1" > /dev/null
    seconds_since "$start"
}

# Each run_* function prints one line of figures, or fails (returns 1,
# its seeder stopped, its logs kept) when a transfer fails or a check does.
stop() { # pid [signal]
    kill "-${2:-TERM}" "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
}

# minimodel: `seed` (verifies the file, then writes its offer) and `fetch
# --offer` in two processes. Timed: the fetch process from start to exit,
# i.e. opening the download, the handshake, every chunk fetched and
# verified against its proof, the final whole-file checks, the rename and
# the receipt.
run_minimodel() { # dir manifest file -> "seconds fetch_rss_kib seed_rss_kib"
    local dir=$1 manifest=$2 file=$3
    rm -rf "$dir/mm" && mkdir -p "$dir/mm"
    /usr/bin/time -f %M -o "$dir/mm/seed.rss" \
        "$MM" seed "$manifest" "$file" --listen 127.0.0.1:0 --offer "$dir/mm/offer.json" --yes \
        > "$dir/mm/seed.log" 2>&1 &
    local seeder=$!
    STARTED+=("$seeder")
    # /usr/bin/time ignores SIGINT: the seeder itself is told to stop.
    stop_seeder() { kill -INT "$(child_of "$seeder")" 2> /dev/null || true; wait "$seeder" || true; }
    wait_for "the minimodel seeder" 600 test -s "$dir/mm/offer.json" || { stop_seeder; return 1; }
    settle "$file"
    local start elapsed status=0
    start=$(now_ns)
    /usr/bin/time -f %M -o "$dir/mm/fetch.rss" \
        "$MM" fetch "$manifest" --offer "$dir/mm/offer.json" -o "$dir/mm/out" --yes \
        > "$dir/mm/fetch.log" 2>&1 || status=$?
    elapsed=$(seconds_since "$start")
    stop_seeder
    [ "$status" = 0 ] || { say "minimodel fetch failed: $(tail -n 2 "$dir/mm/fetch.log")"; return 1; }
    same_file "$file" "$dir/mm/out/compare.slm" || return 1
    echo "$elapsed $(rss_of "$dir/mm/fetch.rss") $(rss_of "$dir/mm/seed.rss")"
    rm -rf "$dir/mm/out"
}

# rqbit: `rqbit share FILE` creates the torrent and seeds it (after its own
# initial check); the .torrent comes from its HTTP API. Timed: `rqbit
# download --initial-peers SEEDER -e` from start to exit, i.e. the session
# start, the connection, every piece fetched and SHA-1 checked, and the
# file on disk.
RQBIT_QUIET=(--disable-dht --disable-dht-persistence --disable-upnp-port-forward
    --disable-lsd --disable-trackers --listen-ip 127.0.0.1)
run_rqbit() { # dir file -> "seconds download_rss_kib"
    local dir=$1 file=$2 api=127.0.0.1:3031 peer_port=42001
    rm -rf "$dir/rq" && mkdir -p "$dir/rq"
    "$RQBIT" "${RQBIT_QUIET[@]}" --listen-port "$peer_port" --http-api-listen-addr "$api" \
        share "$file" > "$dir/rq/share.log" 2>&1 &
    local seeder=$!
    STARTED+=("$seeder")
    rqbit_seeding() {
        curl -sf "http://$api/torrents/0/stats/v1" 2> /dev/null | grep -q '"finished":true'
    }
    wait_for "the rqbit seeder" 600 rqbit_seeding || { stop "$seeder"; return 1; }
    curl -sf -o "$dir/rq/compare.torrent" "http://$api/torrents/0/metadata" \
        || { stop "$seeder"; return 1; }
    settle "$file"
    local start elapsed status=0
    start=$(now_ns)
    /usr/bin/time -f %M -o "$dir/rq/download.rss" \
        "$RQBIT" "${RQBIT_QUIET[@]}" download --disable-http-api \
        --initial-peers "127.0.0.1:$peer_port" -o "$dir/rq/out" -e "$dir/rq/compare.torrent" \
        > "$dir/rq/download.log" 2>&1 || status=$?
    elapsed=$(seconds_since "$start")
    stop "$seeder"
    [ "$status" = 0 ] || { say "rqbit download failed: $(tail -n 2 "$dir/rq/download.log")"; return 1; }
    same_file "$file" "$dir/rq/out/$(basename "$file")" || return 1
    echo "$elapsed $(rss_of "$dir/rq/download.rss")"
    rm -rf "$dir/rq/out"
}

# sendme: `sendme send FILE` imports the file into its store (BLAKE3) and
# prints a ticket. Timed: `sendme receive TICKET` from start to exit, i.e.
# the endpoint, the connection, the verified stream into its store and the
# export of the file.
run_sendme() { # dir file -> "seconds receive_rss_kib"
    local dir=$1 file=$2
    rm -rf "$dir/sm" && mkdir -p "$dir/sm/send" "$dir/sm/out"
    (cd "$dir/sm/send" && exec "$SENDME" send --relay disabled --ticket-type addresses \
        --no-progress "$file" > "$dir/sm/send.log" 2>&1) &
    local seeder=$!
    STARTED+=("$seeder")
    sendme_ticket() { grep -soE 'blob[a-z0-9]{20,}' "$dir/sm/send.log" | head -n 1; }
    # SIGINT: sendme removes its temporary store on Ctrl-C.
    wait_for "the sendme ticket" 600 sendme_ticket > /dev/null || { stop "$seeder" INT; return 1; }
    local ticket
    ticket=$(sendme_ticket)
    settle "$file"
    local start elapsed status=0
    start=$(now_ns)
    (cd "$dir/sm/out" && exec /usr/bin/time -f %M -o "$dir/sm/receive.rss" \
        "$SENDME" receive --relay disabled --no-progress "$ticket" > "$dir/sm/receive.log" 2>&1) \
        || status=$?
    elapsed=$(seconds_since "$start")
    stop "$seeder" INT
    [ "$status" = 0 ] || { say "sendme receive failed: $(tail -n 2 "$dir/sm/receive.log")"; return 1; }
    same_file "$file" "$dir/sm/out/$(basename "$file")" || return 1
    echo "$elapsed $(rss_of "$dir/sm/receive.rss")"
    rm -rf "$dir/sm/out"
}

# Runs a measurement, again (up to three tries) when it fails; failures are
# counted in the report.
FAILED_TRIES=""
measure() { # label output-file command...
    local label=$1 out=$2 try
    shift 2
    for try in 1 2 3; do
        say "-- $label"
        if "$@" >> "$out"; then
            return 0
        fi
        FAILED_TRIES+="$label: try $try failed and was not counted"$'\n'
    done
    say "$label failed three times"
    exit 1
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }

# The aggregate CPU counters of /proc/stat: on a virtual machine, time the
# hypervisor gave to others ("steal") slows every tool alike and is the
# first thing to check when figures differ between runs.
cpu_counters() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9 }' /proc/stat; }
stolen_since() { # "total steal" from cpu_counters
    cpu_counters | awk -v t0="${1% *}" -v s0="${1#* }" \
        '{ t = $1 - t0; printf "%.0f%%", (t > 0 ? 100 * ($2 - s0) / t : 0) }'
}

mkdir -p "$WORK"
REPORT="$WORK/results.md"
CPU_AT_START=$(cpu_counters)
{
    echo "# minimodel comparison, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)," \
        "$(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, Linux $(uname -r);" \
        "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
    versions="$("$MM" --version)"
    [ "$SKIP_RQBIT" = 1 ] || versions+=", $("$RQBIT" --version)"
    [ "$SKIP_SENDME" = 1 ] || versions+=", $("$SENDME" --version)"
    versions+=", $(openssl version | cut -d' ' -f1-2)"
    echo "Tools: $versions. Runs per figure: $RUNS (wall time: the median; peak RSS: the largest)."
    echo
    echo "| size | tool | wall s | MiB/s | peak RSS |"
    echo "|---|---|---:|---:|---:|"
} > "$REPORT"
SUMMARY=""
RAW=""

for size in $SIZES; do
    dir="$WORK/$size"
    rm -rf "$dir" && mkdir -p "$dir"
    file="$dir/compare.slm"
    manifest="$dir/compare.manifest"
    say "== $size: writing the fixture and its manifest"
    "$MM" fixture "$file" --size "$size" --seed 7 > /dev/null
    "$MM" manifest "$file" --model-id compare --publisher-id bench \
        --license-route https://example.org/license --evidence-route https://example.org/evidence \
        -o "$manifest" > /dev/null
    bytes=$(stat -c %s "$file")
    : > "$dir/times-openssl" ; : > "$dir/times-mm" ; : > "$dir/times-rq" ; : > "$dir/times-sm"
    for run in $(seq "$RUNS"); do
        measure "$size run $run: openssl" "$dir/times-openssl" run_openssl "$file"
        measure "$size run $run: minimodel" "$dir/times-mm" run_minimodel "$dir" "$manifest" "$file"
        if [ "$SKIP_RQBIT" = 0 ]; then
            measure "$size run $run: rqbit" "$dir/times-rq" run_rqbit "$dir" "$file"
        fi
        if [ "$SKIP_SENDME" = 0 ]; then
            measure "$size run $run: sendme" "$dir/times-sm" run_sendme "$dir" "$file"
        fi
    done
    median_of() { awk -v c="$2" '{ print $c }' "$1" | median; }
    max_of() { awk -v c="$2" '$c > m { m = $c } END { print m }' "$1"; }
    t_ssl=$(median_of "$dir/times-openssl" 1)
    t_mm=$(median_of "$dir/times-mm" 1)
    rss_fetch=$(max_of "$dir/times-mm" 2)
    rss_seed=$(max_of "$dir/times-mm" 3)
    t_rq=""; t_sm=""
    row() { # tool seconds rss
        echo "| $size | $1 | $2 | $(rate "$bytes" "$2") | $3 |" >> "$REPORT"
    }
    row "openssl dgst -sha256" "$t_ssl" "-"
    row "minimodel fetch" "$t_mm" "$(mib "$rss_fetch") MiB (seed $(mib "$rss_seed") MiB)"
    if [ -s "$dir/times-rq" ]; then
        t_rq=$(median_of "$dir/times-rq" 1)
        row "rqbit download" "$t_rq" "$(mib "$(max_of "$dir/times-rq" 2)") MiB"
    fi
    if [ -s "$dir/times-sm" ]; then
        t_sm=$(median_of "$dir/times-sm" 1)
        row "sendme receive" "$t_sm" "$(mib "$(max_of "$dir/times-sm" 2)") MiB"
    fi
    SUMMARY+="$size: rqbit/minimodel $(ratio "$t_rq" "$t_mm"), sendme/minimodel $(ratio "$t_sm" "$t_mm"), minimodel/openssl $(ratio "$t_mm" "$t_ssl"); peak RSS fetch $(mib "$rss_fetch") MiB, seed $(mib "$rss_seed") MiB"$'\n'
    for tool in openssl mm rq sm; do
        [ -s "$dir/times-$tool" ] || continue
        RAW+="$size $tool: $(awk '{ print $1 " s" }' "$dir/times-$tool" | paste -sd ' ')"$'\n'
    done
    rm -f "$file"
done

{
    echo
    printf '%s' "$SUMMARY" | sed 's/^/- /'
    echo
    echo "Every run (wall s; mm is minimodel fetch, rq rqbit download, sm sendme receive):"
    printf '%s' "$RAW" | sed 's/^/- /'
    if [ -n "$FAILED_TRIES" ]; then
        echo
        echo "Failed tries (run again, not in the figures):"
        printf '%s' "$FAILED_TRIES" | sed 's/^/- /'
    fi
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)." \
        "CPU time stolen by the hypervisor during the runs: $(stolen_since "$CPU_AT_START")."
} >> "$REPORT"
cat "$REPORT"
say "(written to $REPORT)"
