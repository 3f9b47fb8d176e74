#!/usr/bin/env bash
# Scale benchmark: bench/run.sh (rehost against restic and the tar|gzip|aws
# pipeline, on one local Garage) on two large data sets, with the page cache
# dropped before every measurement and the peers' restores timed up to a
# `sync`. Writes bench/RESULTS-scale.md.
#
#   bench/scale.sh                        full run (about an hour on 2 cores; ~52 GiB free disk
#                                         besides the cached sets)
#   BENCH_SCALE_SMALL=1 bench/scale.sh    tiny sets (~48 MiB, 20,000 files): a check of the harness,
#                                         report in target/bench-scale/RESULTS-scale.md
#   BENCH_ROUNDS=1 BENCH_SCALE_SMALL=1 bench/scale.sh    the quickest check
#
# Data sets (bench/gen-data.py --profile, deterministic, generated once and
# cached outside the repository):
#   scale-4g   two 2 GiB incompressible files + 50,000 text files of 1-32 KiB (~4.8 GiB)
#   files-1m   1,000,000 text files of 200 B-2 KiB in 2,000 directories (~1 GiB, ~3.9 GiB on disk)
# (BENCH_SCALE_SMALL: scale-4g-small and files-1m-small.)
#
# Targets (4 GiB set): rehost restore ≤ 0.7 × `restic restore … && sync`,
# backup ≤ 0.5 × restic backup, peak RSS ≤ 64 MiB; 1,000,000-file set: every
# figure reported, peak RSS ≤ 256 MiB. The report also gives, from the
# `restore timings:` line rehost logs, where rehost's restore spends its time.
#
# Environment:
#   BENCH_ROUNDS         rounds of every (tool, operation) (default 3); medians are reported
#   BENCH_SCALE_SMALL=1  the tiny sets (see above)
#   BENCH_SCALE_SETS     which sets, in order (default "scale-4g files-1m")
#   BENCH_SCALE_CACHE    where the data sets are cached (default
#                        ${REHOST_CACHE:-~/.cache/rehost}/bench-scale; one directory per profile)
#   BENCH_SCALE_RESULTS  the report (default bench/RESULTS-scale.md,
#                        target/bench-scale/RESULTS-scale.md with BENCH_SCALE_SMALL)
#   BENCH_DROP_CACHES    default 1: drop the page cache before every measurement (needs root;
#                        without it the report says "caches not dropped: not root")
#   BENCH_SCALE_MIN_FREE_GIB  refuse to start with less free disk than this under target/
#                        (default: estimated from the sets and rounds; 0 skips the check)
#   BENCH_SETTLE, BENCH_TOOLS, BENCH_KEEP, REHOST_BIN: as for bench/run.sh
#
# Each set's logs, /usr/bin/time outputs and raw measurements stay in
# target/bench-scale/PROFILE/ (run.sh's BENCH_WORK).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench-scale: error: $*" >&2; exit 1; }

SMALL=""
case "${BENCH_SCALE_SMALL:-0}" in 0|"") ;; *) SMALL=1 ;; esac
ROUNDS="${BENCH_ROUNDS:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$ROUNDS'"
CACHE="${BENCH_SCALE_CACHE:-${REHOST_CACHE:-$HOME/.cache/rehost}/bench-scale}"
WORKROOT="$ROOT/target/bench-scale"
SETS="${BENCH_SCALE_SETS:-scale-4g files-1m}"
if [ -n "$SMALL" ]; then
    RESULTS="${BENCH_SCALE_RESULTS:-$WORKROOT/RESULTS-scale.md}"
else
    RESULTS="${BENCH_SCALE_RESULTS:-$ROOT/bench/RESULTS-scale.md}"
fi
case "$RESULTS" in /*) ;; *) RESULTS="$ROOT/$RESULTS" ;; esac

PROFILES=()
for s in $SETS; do
    case "$s" in
        scale-4g|files-1m) ;;
        *) die "unknown set in BENCH_SCALE_SETS: $s (scale-4g, files-1m)" ;;
    esac
    PROFILES+=("$s${SMALL:+-small}")
done
[ "${#PROFILES[@]}" -gt 0 ] || die "BENCH_SCALE_SETS is empty"

# --- data: generate (or find cached) every set before anything is measured
for p in "${PROFILES[@]}"; do
    say "data set $p in $CACHE/$p"
    t0="$SECONDS"
    python3 bench/gen-data.py --profile "$p" "$CACHE/$p"
    echo "bench-scale: data set $p ready ($((SECONDS - t0)) s)" >&2
done

# --- free disk: per set, Garage holds every round's backup of every tool (3 x
# rounds; estimated as the random bytes plus half the text, which compresses
# ~4:1), plus at most two restored trees at a time (run.sh with
# BENCH_KEEP_LAST_TREES=0), as allocated on disk; the sets run one after the
# other, each with a fresh Garage.
need=0
for p in "${PROFILES[@]}"; do
    ondisk_kib="$(du -sk "$CACHE/$p" | cut -f1)"
    n="$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["stats"]
stored = s["random_bytes"] + s["text_bytes"] / 2
print(int((stored * 3 * int(sys.argv[2]) + int(sys.argv[3]) * 1024 * 2) / 2**30 + 2.999))
' "$CACHE/$p/.complete" "$ROUNDS" "$ondisk_kib")"
    [ "$n" -gt "$need" ] && need="$n"
done
need="${BENCH_SCALE_MIN_FREE_GIB:-$need}"
mkdir -p "$WORKROOT"
free_gib=$(( $(df -Pk "$ROOT/target" | awk 'NR == 2 { print $4 }') / (1 << 20) ))
if [ "$need" -gt 0 ] && [ "$free_gib" -lt "$need" ]; then
    die "about $need GiB of free disk needed under target/, $free_gib GiB free (BENCH_SCALE_MIN_FREE_GIB=0 skips this check)"
fi
echo "bench-scale: $free_gib GiB free under target/, about $need GiB needed" >&2

# --- the runs
SPECS=()
RC=0
for p in "${PROFILES[@]}"; do
    work="$WORKROOT/$p"
    rm -rf "$work"
    mkdir -p "$work"
    say "bench/run.sh on $p (BENCH_DROP_CACHES=${BENCH_DROP_CACHES:-1} BENCH_SYNC_PEERS=1, $ROUNDS rounds)"
    set +e
    BENCH_PROFILE="$p" BENCH_DATA="$CACHE/$p" BENCH_WORK="$work" BENCH_RESULTS="$work/RESULTS.md" \
        BENCH_DROP_CACHES="${BENCH_DROP_CACHES:-1}" BENCH_SYNC_PEERS=1 BENCH_ROUNDS="$ROUNDS" \
        BENCH_KEEP_LAST_TREES=0 BENCH_SMALL='' bench/run.sh
    rc=$?
    set -e
    [ "$rc" = 0 ] || { echo "bench-scale: bench/run.sh on $p exited $rc" >&2; RC=1; }
    [ "$rc" -lt 128 ] || exit "$rc"  # interrupted
    SPECS+=(--set "$p:$rc:$work")
done

mkdir -p "$(dirname "$RESULTS")"
python3 bench/scale-report.py --out "$RESULTS" --rounds "$ROUNDS" ${SMALL:+--small} "${SPECS[@]}"
say "report: $RESULTS"
cat "$RESULTS"
exit "$RC"
