# Shared by the benchmark scripts (sourced): the settle-and-measure step of
# bench/run.sh. The caller sets WORK (where /usr/bin/time outputs go),
# BENCH_SETTLE, BENCH_ROUNDS, DROP (non-empty: drop the page cache),
# PENDING_RM=() and FAILED=0, and defines die. It may set SAMPLE_DISK to the
# major:minor of the disk the measured tools write to (sample_disk_of sets it).
# shellcheck shell=bash

# sample_disk_of DIR: SAMPLE_DISK := the major:minor of the device that holds
# DIR, as /proc/diskstats names it (a partition has its own line there), or
# empty when /proc/diskstats has no such device (an overlay, say): the samples'
# disk columns are then zeros.
sample_disk_of() {
    SAMPLE_DISK="$(stat -c '%Hd:%Ld' "$1" 2>/dev/null)" || SAMPLE_DISK=""
    awk -v d="$SAMPLE_DISK" '$1 ":" $2 == d { f = 1 } END { exit !f }' /proc/diskstats || SAMPLE_DISK=""
}

# sample_line: one line of what the machine did so far: milliseconds since the
# epoch; /proc/stat's cpu ticks (user nice system idle iowait irq softirq
# steal); SAMPLE_DISK's sectors written, ms writing, ms busy, discards
# completed, sectors discarded (zeros without a disk); /proc/meminfo's Dirty
# and Writeback (KiB). Differences of two lines are what happened between them.
sample_line() {
    local now
    now="$(date +%s%3N)"
    {
        head -n 1 /proc/stat
        [ -z "${SAMPLE_DISK:-}" ] || awk -v d="$SAMPLE_DISK" '$1 ":" $2 == d' /proc/diskstats
        grep -E '^(Dirty|Writeback):' /proc/meminfo
    } | awk -v now="$now" '
        $1 == "cpu" { cpu = $2 " " $3 " " $4 " " $5 " " $6 " " $7 " " $8 " " $9 }
        NF >= 14 && $1 ~ /^[0-9]+$/ { disk = $10 " " $11 " " $13 " " ($15 == "" ? 0 : $15) " " ($17 == "" ? 0 : $17) }
        $1 == "Dirty:" { dirty = $2 }
        $1 == "Writeback:" { wb = $2 }
        END { if (disk == "") disk = "0 0 0 0 0"; print now, cpu, disk, dirty, wb }'
}

# The columns of sample_line, and of the samples files measure writes.
SAMPLE_HEADER="ms user nice system idle iowait irq softirq steal wsect wms busyms discards dsect dirty_kib writeback_kib"

# sample_sum FILE: from a samples file (first and last lines), the measurement's
# iowait and steal seconds, MiB written to the disk, seconds the disk was busy,
# MiB discarded, and the largest Dirty + Writeback seen (MiB), tab-separated.
sample_sum() {
    awk 'NR == 2 { for (i = 1; i <= NF; i++) a[i] = $i }
         NR > 1 { for (i = 1; i <= NF; i++) b[i] = $i; if ($15 + $16 > m) m = $15 + $16 }
         END {
             if (NR < 3) { print "-\t-\t-\t-\t-\t-"; exit }
             printf "%.1f\t%.1f\t%.0f\t%.1f\t%.0f\t%.0f\n", (b[6] - a[6]) / 100, (b[9] - a[9]) / 100,
                 (b[10] - a[10]) / 2048, (b[12] - a[12]) / 1000, (b[14] - a[14]) / 2048, m / 1024
         }' "$1"
}

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
# output to LOG; sets M_WALL M_CPU M_RSS M_EXIT, and M_SYS (sample_sum of the
# machine's samples taken every second meanwhile, kept in
# WORK/samples-TOOL-OP-rROUND.txt), so that a slow run can be told from a slow
# machine (waiting for the disk, CPU stolen by the host, discards).
measure() {
    local tool="$1" op="$2" round="$3" logf="$4"
    shift 4
    local tf="$WORK/time-$tool-$op-r$round.txt" sf="$WORK/samples-$tool-$op-r$round.txt" t0 t1 sampler
    settle
    echo "bench: round $round/$BENCH_ROUNDS: $tool $op ..." >&2
    echo "$SAMPLE_HEADER" >"$sf"
    sample_line >>"$sf"
    # bounded by the measurement: killed right after it
    (while sleep 1; do sample_line >>"$sf"; done) &
    sampler=$!
    t0="$(date +%s%N)"
    set +e
    /usr/bin/time -v -o "$tf" "$@" >"$logf" 2>&1
    M_EXIT=$?
    set -e
    t1="$(date +%s%N)"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    sample_line >>"$sf"
    M_SYS="$(sample_sum "$sf")"
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

