#!/bin/sh
# kill -9 a download again and again through the binary, then let it
# finish and check the file: the test `resume_kill_loop` with more kills.
# Prints what each kill cost and the total fetched again.
#
#   scripts/kill-loop.sh [KILLS] [SEED]     (defaults: 100 kills, seed 0x6b696c6c)
set -eu
kills=${1:-100}
seed=${2:-1802071148}
cd "$(dirname "$0")/.."
MINIMODEL_KILLS=$kills MINIMODEL_KILL_SEED=$seed exec cargo test -p minimodel \
    --test resume_kill_loop a_download_killed_at_random_moments -- --nocapture
