# Shared by the benchmark scripts (sourced): the settle-and-measure step of
# bench/run.sh. The caller sets WORK (where /usr/bin/time outputs go),
# BENCH_SETTLE, BENCH_ROUNDS, DROP (non-empty: drop the page cache),
# PENDING_RM=() and FAILED=0, and defines die.
# shellcheck shell=bash

# settle: delete the trees waiting for deletion, then sync and wait, so that
# neither the writeback nor the (ext4 `discard`) trims of earlier work land
# inside the next measurement. Runs before every measurement, for every tool.
# With BENCH_DROP_CACHES (and root), the page cache is dropped after the sync.
settle() {
    if [ "${#PENDING_RM[@]}" -gt 0 ]; then
        rm -rf "${PENDING_RM[@]}"
        PENDING_RM=()
    fi
    sync
    if [ -n "$DROP" ]; then
        echo 3 >/proc/sys/vm/drop_caches || die "dropping the page cache failed"
    fi
    sleep "$BENCH_SETTLE"
}

# measure TOOL OP ROUND LOG CMD...: settle, run CMD once under /usr/bin/time -v,
# output to LOG; sets M_WALL M_CPU M_RSS M_EXIT
measure() {
    local tool="$1" op="$2" round="$3" logf="$4"
    shift 4
    local tf="$WORK/time-$tool-$op-r$round.txt" t0 t1
    settle
    echo "bench: round $round/$BENCH_ROUNDS: $tool $op ..." >&2
    t0="$(date +%s%N)"
    set +e
    /usr/bin/time -v -o "$tf" "$@" >"$logf" 2>&1
    M_EXIT=$?
    set -e
    t1="$(date +%s%N)"
    M_WALL="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
    M_RSS="$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$tf")"
    M_CPU="$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$tf")"
    [ -n "$M_RSS" ] || M_RSS=0
    if [ "$M_EXIT" != 0 ]; then
        FAILED=1
        echo "bench: round $round: $tool $op FAILED (exit $M_EXIT); last lines of $logf:" >&2
        tail -n 25 "$logf" >&2
    else
        echo "bench: round $round: $tool $op: ${M_WALL}s wall, ${M_CPU}s CPU, $((M_RSS / 1024)) MiB peak RSS" >&2
    fi
}

