#!/usr/bin/env bash
# Compares a minimodel download with the tools people would use instead, on
# this machine, on loopback, with the same file: rqbit (BitTorrent over TCP),
# sendme (iroh-blobs over QUIC) and one `openssl dgst -sha256` pass of the
# file as the hashing floor. What is timed, and the figures: the
# "Comparison" section of docs/performance.md.
#
#   benches/compare.sh [--sizes "256MiB 1GiB"] [--with-4gib] [--runs N]
#                      [--modes "fresh persistent"] [--harness both|host|netns]
#                      [--work DIR] [--tools DIR] [--skip-rqbit]
#                      [--skip-sendme] [--no-build]
#   MINIMODEL_BIN=PATH: time that minimodel binary (default target/release/minimodel)
#
# Two seeder modes, both by default (--modes picks): "fresh" starts a new
# seeder for every timed run and stops it after; "persistent" starts each
# tool's seeder once per size and keeps it up for all the runs of that size.
# In both, the runs of the tools alternate: openssl, minimodel, rqbit,
# sendme, then again. rqbit is fetched two ways, each its own row: with the
# .torrent taken from the seeder's HTTP API, and with a bare magnet link
# (the metadata then comes from the seeder, inside the timed run).
#
# Every timed run records the wall time, the receiver's CPU time (user +
# system, /usr/bin/time) and the sender's: the seeder's utime + stime from
# /proc/PID/stat, read just before and just after the run (its start-up,
# e.g. hashing the file, is not counted). Each harness's report (target/
# compare/results-host.md and results-netns.md by default) gives medians, and per size the rqbit/minimodel
# and sendme/minimodel wall-time ratios of every mode and rqbit variant,
# with the least favourable one to minimodel.
#
# rqbit and sendme are installed with `cargo install --locked` into the tools
# directory (default target/compare-tools), once, and reused on later runs;
# they are only measured, never part of the project.
#
# Two harnesses, both by default (--harness picks), each its own report:
# "host" runs every tool on the host's own loopback, the way a person runs
# them on one machine; "netns" runs them in a private network namespace
# that has nothing but loopback. The namespace costs rqbit's TCP about 1.6x
# on this kernel and QUIC nothing, so it flatters minimodel; the host's
# loopback is the figure a user meets, and the goal is judged on the less
# favourable of the two. On the host every tool is bound to 127.0.0.1 with
# DHT, LSD, trackers and UPnP off; sendme runs only in the namespace (with
# its relays off it may still publish its address to discovery servers
# beyond this machine), so --harness host implies --skip-sendme.

set -euo pipefail

usage() { # the comment block above, without its leading "# "
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES="256MiB 1GiB"
RUNS=1
MODES="fresh persistent"
WORK="$ROOT/target/compare"
TOOLS="$ROOT/target/compare-tools"
SKIP_RQBIT=0
SKIP_SENDME=0
BUILD=1
INSIDE=0
HARNESS=both
ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES=$2; shift 2 ;;
        --with-4gib) SIZES="$SIZES 4GiB"; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --skip-rqbit) SKIP_RQBIT=1; shift ;;
        --skip-sendme) SKIP_SENDME=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --harness) HARNESS=$2; shift 2 ;;
        --inside-namespace) INSIDE=netns; shift ;;
        --inside-host) INSIDE=host; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ -n "${MODES// /}" ] || { echo "--modes: give fresh, persistent or both" >&2; exit 2; }
case "$HARNESS" in
    both|host|netns) ;;
    *) echo "unknown harness $HARNESS (both, host, netns)" >&2; exit 2 ;;
esac
for mode in $MODES; do
    case "$mode" in
        fresh|persistent) ;;
        *) echo "unknown mode $mode (fresh, persistent)" >&2; exit 2 ;;
    esac
done

MM="${MINIMODEL_BIN:-$ROOT/target/release/minimodel}"
RQBIT="$TOOLS/bin/rqbit"
SENDME="$TOOLS/bin/sendme"

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- preparation
# Outside the namespace: builds and installs need crates.io.
if [ "$INSIDE" = 0 ]; then
    for tool in /usr/bin/time openssl unshare ip curl cmp getconf pgrep; do
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
    # sendme runs only in the namespace (see above).
    [ "$SKIP_SENDME" = 1 ] || [ "$HARNESS" = host ] || install_tool sendme "$SENDME"
    if [ "$HARNESS" != netns ]; then
        say "==== harness: the host's loopback"
        "$0" "${ARGS[@]}" --no-build --skip-sendme --inside-host
    fi
    if [ "$HARNESS" != host ]; then
        say "==== harness: a private network namespace"
        # Only loopback in it; as root directly, otherwise inside a user
        # namespace.
        if unshare -n true 2> /dev/null; then
            unshare -n -- "$0" "${ARGS[@]}" --no-build --inside-namespace
        elif unshare -rn true 2> /dev/null; then
            unshare -rn -- "$0" "${ARGS[@]}" --no-build --inside-namespace
        else
            say "cannot create a network namespace (unshare -n): no namespace figures"
            exit 1
        fi
    fi
    if [ "$HARNESS" = both ]; then
        say "less favourable to minimodel, per harness:"
        for h in host netns; do
            grep -h '^- .*, less favourable:' "$WORK/results-$h.md" | sed "s/^- /$h: /" >&2 || true
        done
    fi
    exit 0
fi

# ------------------------------------------------------------ the measurement
[ "$INSIDE" = host ] || ip link set lo up

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        # A /usr/bin/time wrapper dies of TERM without passing it on.
        pkill -TERM -P "$pid" 2> /dev/null || true
        kill "$pid" 2> /dev/null || true
    done
}
trap cleanup EXIT

CLK_TCK=$(getconf CLK_TCK)
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
# The pid of the only child of a /usr/bin/time process.
child_of() { pgrep -P "$1" | head -n 1; }
# utime + stime of a live process (all its threads), in clock ticks: fields
# 14 and 15 of /proc/PID/stat, counted after the command name (field 2,
# which may hold spaces and parentheses).
ticks_of() { # pid
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
# Peak RSS so far of a live process, in KiB.
hwm_of() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2> /dev/null || true; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
same_file() { cmp -s "$1" "$2" || { say "$2 differs from $1"; return 1; }; }
# Before each timed transfer: the source in the page cache, no writeback
# of an earlier run pending.
settle() { cat "$1" > /dev/null; sync; }
stop() { # pid [signal]
    kill "-${2:-TERM}" "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
}

# Times one transfer: the receiver runs under /usr/bin/time (in CWD, output
# to LOG) while the sender, a running seeder ("-": none), serves it. Sets
# FIGURES to "wall receiver_cpu sender_cpu both_cpu receiver_rss_kib
# sender_rss_kib" (seconds; "-" where there is no sender) and returns the
# receiver's exit status.
FIGURES=""
timed() { # sender-pid cwd time-file log-file command...
    local sender=$1 cwd=$2 tf=$3 log=$4
    shift 4
    local before="" after="" hwm="" start elapsed status=0
    : > "$log"
    rm -f "$tf"
    if [ "$sender" != - ]; then
        before=$(ticks_of "$sender") || { say "the sender ($sender) is not running"; return 1; }
    fi
    start=$(now_ns)
    (cd "$cwd" && exec /usr/bin/time -f "%e %U %S %M" -o "$tf" "$@") > "$log" 2>&1 || status=$?
    elapsed=$(seconds_since "$start")
    if [ "$sender" != - ]; then
        after=$(ticks_of "$sender") || { say "the sender ($sender) exited during the run"; return 1; }
        hwm=$(hwm_of "$sender")
    fi
    [ "$status" = 0 ] || return "$status"
    # After a failure /usr/bin/time writes a line of its own first.
    FIGURES=$(tail -n 1 "$tf" | awk -v wall="$elapsed" -v b="$before" -v a="$after" \
        -v tck="$CLK_TCK" -v hwm="$hwm" '{
            recv = $2 + $3
            if (b == "") { send = "-"; both = "-" }
            else { s = (a - b) / tck; send = sprintf("%.2f", s); both = sprintf("%.2f", recv + s) }
            printf "%s %.2f %s %s %s %s\n", wall, recv, send, both, $4, (hwm == "" ? "-" : hwm)
        }')
    [ -n "$FIGURES" ] || { say "no figures from /usr/bin/time in $tf"; return 1; }
}

# Each seeder has a start_*_seeder and a stop_*_seeder function (mm, rq,
# sm), each transfer a fetch_* function (openssl, mm, rqt, rqm, sm) that
# prints one line of figures, or fails (returns 1, its logs kept) when the
# transfer fails or a check does. All take: dir manifest file.

# openssl: one SHA-256 pass over the file from the page cache.
fetch_openssl() {
    local dir=$1 file=$3
    settle "$file"
    timed - "$dir" "$dir/openssl.time" /dev/null openssl dgst -sha256 "$file" || return 1
    echo "$FIGURES"
}

# minimodel: `seed` (verifies the file, then writes its offer) and `fetch
# --offer` in two processes. Timed: the fetch process from start to exit,
# i.e. opening the download, the handshake, every chunk fetched and
# verified against its proof, the final whole-file checks, the rename and
# the receipt.
MM_SEEDER="" # the /usr/bin/time wrapper
MM_SENDER="" # minimodel seed itself
start_mm_seeder() {
    local dir=$1 manifest=$2 file=$3
    rm -rf "$dir/mm" && mkdir -p "$dir/mm"
    /usr/bin/time -f %M -o "$dir/mm/seed.rss" \
        "$MM" seed "$manifest" "$file" --listen 127.0.0.1:0 --offer "$dir/mm/offer.json" --yes \
        > "$dir/mm/seed.log" 2>&1 &
    MM_SEEDER=$!
    STARTED+=("$MM_SEEDER")
    wait_for "the minimodel seeder" 600 test -s "$dir/mm/offer.json" || { stop_mm_seeder; return 1; }
    MM_SENDER=$(child_of "$MM_SEEDER")
    [ -n "$MM_SENDER" ] || { say "no minimodel seed process under $MM_SEEDER"; stop_mm_seeder; return 1; }
}
stop_mm_seeder() {
    [ -n "$MM_SEEDER" ] || return 0
    # /usr/bin/time ignores SIGINT: the seeder itself is told to stop.
    local child
    child=$(child_of "$MM_SEEDER" || true)
    [ -z "$child" ] || kill -INT "$child" 2> /dev/null || true
    wait "$MM_SEEDER" 2> /dev/null || true
    MM_SEEDER="" MM_SENDER=""
}
fetch_mm() {
    local dir=$1 manifest=$2 file=$3
    rm -rf "$dir/mm/out"
    settle "$file"
    timed "$MM_SENDER" "$dir/mm" "$dir/mm/fetch.time" "$dir/mm/fetch.log" \
        "$MM" fetch "$manifest" --offer "$dir/mm/offer.json" -o "$dir/mm/out" --yes \
        || { say "minimodel fetch failed: $(tail -n 2 "$dir/mm/fetch.log")"; return 1; }
    same_file "$file" "$dir/mm/out/compare.slm" || return 1
    echo "$FIGURES"
    rm -rf "$dir/mm/out"
}

# rqbit: `rqbit share FILE` creates the torrent and seeds it (after its own
# initial check); the .torrent and the info hash come from its HTTP API.
# Timed: `rqbit download --initial-peers SEEDER -e` from start to exit,
# i.e. the session start, the connection, for the magnet link the metadata
# from the seeder, every piece fetched and SHA-1 checked, and the file on
# disk.
RQBIT_QUIET=(--disable-dht --disable-dht-persistence --disable-upnp-port-forward
    --disable-lsd --disable-trackers --listen-ip 127.0.0.1)
RQ_API=127.0.0.1:3031
RQ_PORT=42001
RQ_SEEDER=""
RQ_HASH=""
rqbit_seeding() {
    curl -sf "http://$RQ_API/torrents/0/stats/v1" 2> /dev/null | grep -q '"finished":true'
}
start_rq_seeder() {
    local dir=$1 file=$3
    rm -rf "$dir/rq" && mkdir -p "$dir/rq"
    "$RQBIT" "${RQBIT_QUIET[@]}" --listen-port "$RQ_PORT" --http-api-listen-addr "$RQ_API" \
        share "$file" > "$dir/rq/share.log" 2>&1 &
    RQ_SEEDER=$!
    STARTED+=("$RQ_SEEDER")
    wait_for "the rqbit seeder" 600 rqbit_seeding || { stop_rq_seeder; return 1; }
    curl -sf -o "$dir/rq/compare.torrent" "http://$RQ_API/torrents/0/metadata" \
        || { say "no .torrent from the rqbit API"; stop_rq_seeder; return 1; }
    RQ_HASH=$(curl -sf "http://$RQ_API/torrents/0" | tr -d ' \n' \
        | grep -oE '"info_hash":"[0-9a-fA-F]{40}"' | grep -oE '[0-9a-fA-F]{40}' || true)
    [ -n "$RQ_HASH" ] || { say "no info_hash from the rqbit API"; stop_rq_seeder; return 1; }
}
stop_rq_seeder() {
    [ -n "$RQ_SEEDER" ] || return 0
    stop "$RQ_SEEDER"
    RQ_SEEDER="" RQ_HASH=""
}
rq_download() { # dir file variant torrent-or-magnet
    local dir=$1 file=$2 variant=$3 source=$4
    rm -rf "$dir/rq/out"
    settle "$file"
    timed "$RQ_SEEDER" "$dir/rq" "$dir/rq/download-$variant.time" "$dir/rq/download-$variant.log" \
        "$RQBIT" "${RQBIT_QUIET[@]}" download --disable-http-api \
        --initial-peers "127.0.0.1:$RQ_PORT" -o "$dir/rq/out" -e "$source" \
        || { say "rqbit download ($variant) failed: $(tail -n 2 "$dir/rq/download-$variant.log")"; return 1; }
    same_file "$file" "$dir/rq/out/$(basename "$file")" || return 1
    echo "$FIGURES"
    rm -rf "$dir/rq/out"
}
fetch_rqt() { rq_download "$1" "$3" torrent "$1/rq/compare.torrent"; }
fetch_rqm() { rq_download "$1" "$3" magnet "magnet:?xt=urn:btih:$RQ_HASH"; }

# sendme: `sendme send FILE` imports the file into its store (BLAKE3) and
# prints a ticket. Timed: `sendme receive TICKET` from start to exit, i.e.
# the endpoint, the connection, the verified stream into its store and the
# export of the file.
SM_SEEDER=""
SM_TICKET=""
start_sm_seeder() {
    local dir=$1 file=$3
    rm -rf "$dir/sm" && mkdir -p "$dir/sm/send"
    # exec: $! is sendme itself.
    (cd "$dir/sm/send" && exec "$SENDME" send --relay disabled --ticket-type addresses \
        --no-progress "$file" > "$dir/sm/send.log" 2>&1) &
    SM_SEEDER=$!
    STARTED+=("$SM_SEEDER")
    sendme_ticket() { grep -soE 'blob[a-z0-9]{20,}' "$dir/sm/send.log" | head -n 1; }
    wait_for "the sendme ticket" 600 sendme_ticket > /dev/null || { stop_sm_seeder; return 1; }
    SM_TICKET=$(sendme_ticket)
}
stop_sm_seeder() {
    [ -n "$SM_SEEDER" ] || return 0
    # SIGINT: sendme removes its temporary store on Ctrl-C.
    stop "$SM_SEEDER" INT
    SM_SEEDER="" SM_TICKET=""
}
fetch_sm() {
    local dir=$1 file=$3
    rm -rf "$dir/sm/out" && mkdir -p "$dir/sm/out"
    settle "$file"
    timed "$SM_SEEDER" "$dir/sm/out" "$dir/sm/receive.time" "$dir/sm/receive.log" \
        "$SENDME" receive --relay disabled --no-progress "$SM_TICKET" \
        || { say "sendme receive failed: $(tail -n 2 "$dir/sm/receive.log")"; return 1; }
    same_file "$file" "$dir/sm/out/$(basename "$file")" || return 1
    echo "$FIGURES"
    rm -rf "$dir/sm/out"
}

seeder_of() { # transfer -> seeder
    case "$1" in
        rqt|rqm) echo rq ;;
        *) echo "$1" ;;
    esac
}
seeder_up() { # seeder
    local var
    var="$(tr '[:lower:]' '[:upper:]' <<< "$1")_SEEDER"
    [ -n "${!var}" ] && kill -0 "${!var}" 2> /dev/null
}
# fresh: a new seeder for this run alone.
run_fresh() { # transfer dir manifest file
    local transfer=$1 seeder status=0
    shift
    seeder=$(seeder_of "$transfer")
    "start_${seeder}_seeder" "$@" || return 1
    "fetch_$transfer" "$@" || status=1
    "stop_${seeder}_seeder"
    return "$status"
}
# persistent: the seeder started for this size, or a new one if it is not
# running (it failed to start, died, or a failed try stopped it); such a
# restart is in the report.
SEEDER_RESTARTS=""
run_persistent() { # transfer dir manifest file
    local transfer=$1 seeder
    shift
    seeder=$(seeder_of "$transfer")
    if ! seeder_up "$seeder"; then
        SEEDER_RESTARTS+="$(basename "$1"): the $seeder seeder was not running before a $(label_of "$transfer") run and was started again"$'\n'
        "stop_${seeder}_seeder"
        "start_${seeder}_seeder" "$@" || return 1
    fi
    "fetch_$transfer" "$@" || { "stop_${seeder}_seeder"; return 1; }
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

mib() { awk -v k="$1" 'BEGIN { if (k == "-" || k == "") print "-"; else printf "%.1f", k / 1024 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
# Median and largest of a column of a times file; "-" when it holds "-".
median_of() { # file column
    local col
    col=$(awk -v c="$2" '{ print $c }' "$1")
    if grep -qx -- - <<< "$col"; then echo -; else median <<< "$col"; fi
}
max_of() { # file column
    local col
    col=$(awk -v c="$2" '{ print $c }' "$1")
    if grep -qx -- - <<< "$col"; then echo -; else awk '$1 > m { m = $1 } END { print m }' <<< "$col"; fi
}

# The aggregate CPU counters of /proc/stat: on a virtual machine, time the
# hypervisor gave to others ("steal") slows every tool alike and is the
# first thing to check when figures differ between runs.
cpu_counters() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9 }' /proc/stat; }
stolen_since() { # "total steal" from cpu_counters
    cpu_counters | awk -v t0="${1% *}" -v s0="${1#* }" \
        '{ t = $1 - t0; printf "%.0f%%", (t > 0 ? 100 * ($2 - s0) / t : 0) }'
}

TRANSFERS=(openssl mm)
[ "$SKIP_RQBIT" = 1 ] || TRANSFERS+=(rqt rqm)
[ "$SKIP_SENDME" = 1 ] || TRANSFERS+=(sm)
SEEDERS=(mm)
[ "$SKIP_RQBIT" = 1 ] || SEEDERS+=(rq)
[ "$SKIP_SENDME" = 1 ] || SEEDERS+=(sm)
label_of() {
    case "$1" in
        openssl) echo "openssl dgst -sha256" ;;
        mm) echo "minimodel fetch" ;;
        rqt) echo "rqbit download (.torrent)" ;;
        rqm) echo "rqbit download (magnet)" ;;
        sm) echo "sendme receive" ;;
    esac
}
short_of() {
    case "$1" in
        rqt) echo "rqbit (.torrent)" ;;
        rqm) echo "rqbit (magnet)" ;;
        sm) echo "sendme" ;;
    esac
}

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
REPORT="$WORK/results-$INSIDE.md"
CPU_AT_START=$(cpu_counters)
{
    echo "# minimodel comparison, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    if [ "$INSIDE" = host ]; then
        echo "Harness: the host's own loopback (127.0.0.1), as a person runs the tools on one machine."
    else
        echo "Harness: a private network namespace with nothing but loopback (\`unshare -n\`)."
    fi
    echo
    echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)," \
        "$(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, Linux $(uname -r);" \
        "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
    versions="$("$MM" --version)"
    [ "$SKIP_RQBIT" = 1 ] || versions+=", $("$RQBIT" --version)"
    [ "$SKIP_SENDME" = 1 ] || versions+=", $("$SENDME" --version)"
    versions+=", $(openssl version | cut -d' ' -f1-2)"
    echo "Tools: $versions. Runs per figure: $RUNS (wall time and CPU: the median; peak RSS: the largest)."
    echo "Modes: $MODES (fresh: a new seeder for every run; persistent: one seeder per tool and size, up for all its runs)."
    echo "CPU: user + system seconds; receiver from /usr/bin/time, sender from the seeder's /proc/PID/stat"
    echo "just before and after the run; both ends: their sum per run."
    echo
    echo "| size | mode | tool | wall s | MiB/s | receiver CPU s | sender CPU s | both ends CPU s | peak RSS receiver | peak RSS sender |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
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
    rq_low="" rq_low_at="" sm_low="" sm_low_at=""
    for mode in $MODES; do
        for t in "${TRANSFERS[@]}"; do : > "$dir/times-$mode-$t"; done
        if [ "$mode" = persistent ]; then
            for s in "${SEEDERS[@]}"; do
                say "-- $size $mode: starting the $s seeder"
                # Should it fail, run_persistent starts it again, counted
                # as a failed try.
                "start_${s}_seeder" "$dir" "$manifest" "$file" || true
            done
        fi
        for run in $(seq "$RUNS"); do
            for t in "${TRANSFERS[@]}"; do
                if [ "$t" = openssl ]; then
                    measure "$size $mode run $run: openssl" "$dir/times-$mode-$t" \
                        fetch_openssl "$dir" "$manifest" "$file"
                else
                    measure "$size $mode run $run: $(label_of "$t")" "$dir/times-$mode-$t" \
                        "run_$mode" "$t" "$dir" "$manifest" "$file"
                fi
            done
        done
        for s in "${SEEDERS[@]}"; do "stop_${s}_seeder"; done

        t_mm=$(median_of "$dir/times-$mode-mm" 1)
        t_ssl=$(median_of "$dir/times-$mode-openssl" 1)
        line="$size, $mode:"
        for t in "${TRANSFERS[@]}"; do
            times="$dir/times-$mode-$t"
            wall=$(median_of "$times" 1)
            rss_send=$(max_of "$times" 6)
            [ "$rss_send" = - ] || rss_send="$(mib "$rss_send") MiB"
            echo "| $size | $mode | $(label_of "$t") | $wall | $(rate "$bytes" "$wall") |" \
                "$(median_of "$times" 2) | $(median_of "$times" 3) | $(median_of "$times" 4) |" \
                "$(mib "$(max_of "$times" 5)") MiB | $rss_send |" >> "$REPORT"
            RAW+="$size $mode $t: $(awk '{ printf "%s%s s (CPU %s%s)", (NR > 1 ? ", " : ""), $1, $2, ($3 == "-" ? "" : " + " $3) }' "$times")"$'\n'
            case "$t" in
                rqt|rqm|sm)
                    r=$(ratio "$wall" "$t_mm")
                    line+=" $(short_of "$t")/minimodel $r,"
                    at="$mode"
                    [ "$t" = sm ] || at+=", $(short_of "$t" | tr -d '()' | cut -d' ' -f2)"
                    if [ "$t" = sm ]; then
                        if [ -z "$sm_low" ] || below "$r" "$sm_low"; then sm_low=$r sm_low_at=$at; fi
                    elif [ -z "$rq_low" ] || below "$r" "$rq_low"; then
                        rq_low=$r rq_low_at=$at
                    fi
                    ;;
            esac
        done
        line+=" minimodel/openssl $(ratio "$t_mm" "$t_ssl"); peak RSS fetch $(mib "$(max_of "$dir/times-$mode-mm" 5)") MiB, seed $(mib "$(max_of "$dir/times-$mode-mm" 6)") MiB"
        SUMMARY+="$line"$'\n'
    done
    low=""
    [ -z "$rq_low" ] || low+="rqbit/minimodel $rq_low ($rq_low_at)"
    [ -z "$sm_low" ] || low+="${low:+, }sendme/minimodel $sm_low ($sm_low_at)"
    [ -z "$low" ] || SUMMARY+="$size, less favourable: $low"$'\n'
    rm -f "$file"
done

{
    echo
    echo "Wall-time ratios (above 1: minimodel faster), per mode and rqbit variant; less favourable: the lowest of them."
    echo
    printf '%s' "$SUMMARY" | sed 's/^/- /'
    echo
    echo "Every run (wall s, CPU receiver + sender s; mm is minimodel fetch, rqt rqbit download of the"
    echo ".torrent, rqm rqbit download of the magnet link, sm sendme receive):"
    echo
    printf '%s' "$RAW" | sed 's/^/- /'
    if [ -n "$FAILED_TRIES" ]; then
        echo
        echo "Failed tries (run again, not in the figures; in persistent mode a failed try also restarts that seeder):"
        echo
        printf '%s' "$FAILED_TRIES" | sed 's/^/- /'
    fi
    if [ -n "$SEEDER_RESTARTS" ]; then
        echo
        echo "Seeder restarts in persistent mode:"
        echo
        printf '%s' "$SEEDER_RESTARTS" | sed 's/^/- /'
    fi
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)." \
        "CPU time stolen by the hypervisor during the runs: $(stolen_since "$CPU_AT_START")."
} >> "$REPORT"
cat "$REPORT"
say "(written to $REPORT)"
