#!/usr/bin/env bash
# Backup/restore benchmark: rehost against restic and the tar|gzip|aws pipeline,
# all against the same real single-node Garage on loopback. Writes a report
# (bench/RESULTS.md for a full run).
#
#   bench/run.sh                        full run (~1 GiB data set)
#   BENCH_SMALL=1 bench/run.sh          ~20 MiB data set (quick check of the harness)
#   BENCH_TOOLS="tar restic" bench/run.sh   only some tools (default: "rehost tar restic")
#   BENCH_ROUNDS=5 bench/run.sh         5 rounds of every measurement (default 3)
#
# Environment:
#   BENCH_DATA      data directory (default target/bench-data, target/bench-data-small with BENCH_SMALL)
#   BENCH_ROUNDS    rounds of every (tool, operation) (default 3); the report gives medians
#   BENCH_SETTLE    seconds to wait after the `sync` before each measurement (default 5)
#   BENCH_RESULTS   report file (default bench/RESULTS.md for a full run with every tool and
#                   none of the options below, $BENCH_WORK/RESULTS.md otherwise)
#   BENCH_KEEP=1    keep Garage running and its data, and the last round's restored trees, afterwards
#   REHOST_BIN      rehost binary (default target/release/rehost; built when missing)
#   BENCH_PROFILE   a named data set of bench/gen-data.py (`--profile`: scale-4g, files-1m,
#                   scale-4g-small, files-1m-small) instead of the default one; cached (BENCH_DATA
#                   default) in $BENCH_SCALE_CACHE/PROFILE, by default
#                   ${REHOST_CACHE:-~/.cache/rehost}/bench-scale/PROFILE, outside the repository
#   BENCH_WORK      directory of the logs, /usr/bin/time outputs and raw measurements
#                   (results-RUNID.tsv, and results-RUNID.json: the run's parameters)
#                   (default target/bench)
#   BENCH_DROP_CACHES=1  before every measurement, after the settle `sync`, drop the page cache
#                   (echo 3 > /proc/sys/vm/drop_caches) instead of reading the data before
#                   every backup; when that is not possible (not root) the report says so
#                   ("caches not dropped: ...") and the data is read before every backup as usual
#   BENCH_KEEP_LAST_TREES=0  queue the last round's restored trees for deletion before the next
#                   measurement like the other rounds' (default: kept until the end), so that at
#                   most two trees are on disk at a time (bench/scale.sh sets it; BENCH_KEEP wins)
#   BENCH_SYNC_PEERS=1   the timed restic and tar restores end with `&& sync` inside the measured
#                   command, so that their data reaching the disk is timed as rehost's is
#                   (rehost's restore ends with a syncfs of its own); the report's method says so
#
# Method: every (tool, operation) runs BENCH_ROUNDS times under /usr/bin/time -v
# (wall seconds, CPU seconds, maximum resident set size), interleaved so that
# drift of the machine hits every tool alike: all backup rounds, then all
# restore rounds; round r runs the tools in BENCH_TOOLS order rotated left by
# r-1 (default: rehost tar restic / tar restic rehost / restic rehost tar), so
# that over every N consecutive rounds (N tools) each tool takes each position
# in a round once.
#   * Every backup round starts from scratch: rehost writes to a fresh
#     storage.url prefix, restic to a fresh repository (`restic init`, not timed,
#     and an empty cache), the tar pipeline to a fresh key. The data is read
#     (tar cf - DATA >/dev/null) before every backup, so every tool starts with
#     the same warm page cache.
#   * Every restore round restores the backup made in round 1 into a fresh empty
#     directory (restic with an empty cache, as on a fresh host). The tree is
#     compared with the source after the run (not timed), then deleted before
#     the next measurement's sync (the last round's trees are kept until the end).
#   * Before every measurement: pending deletions, `sync`, `sleep BENCH_SETTLE`,
#     so that writeback and ext4 discards of earlier work land outside it.
#   * BENCH_DROP_CACHES=1: sync, drop the page cache, then sleep BENCH_SETTLE, before
#     every measurement; the data is then not read before the backups.
# For shell pipelines the peak RSS is that of the largest single process of the
# pipeline, not the sum.

# The measured `bash -c '...'` commands get their arguments as "$1" "$2":
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
BENCH_SMALL="${BENCH_SMALL:-0}"
[ "$BENCH_SMALL" = 0 ] && BENCH_SMALL=""
BENCH_TOOLS="${BENCH_TOOLS:-rehost tar restic}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SETTLE="${BENCH_SETTLE:-5}"
BENCH_PROFILE="${BENCH_PROFILE:-}"
DROP_ASKED=""
case "${BENCH_DROP_CACHES:-0}" in 0|"") ;; *) DROP_ASKED=1 ;; esac
SYNC_PEERS=""
case "${BENCH_SYNC_PEERS:-0}" in 0|"") ;; *) SYNC_PEERS=1 ;; esac
RM_LAST_TREES=""
[ "${BENCH_KEEP_LAST_TREES:-1}" != 0 ] || [ -n "${BENCH_KEEP:-}" ] || RM_LAST_TREES=1
if [ -n "$BENCH_PROFILE" ]; then
    DATA="${BENCH_DATA:-${BENCH_SCALE_CACHE:-${REHOST_CACHE:-$HOME/.cache/rehost}/bench-scale}/$BENCH_PROFILE}"
elif [ -n "$BENCH_SMALL" ]; then
    DATA="${BENCH_DATA:-$ROOT/target/bench-data-small}"
else
    DATA="${BENCH_DATA:-$ROOT/target/bench-data}"
fi
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
WORK="${BENCH_WORK:-$ROOT/target/bench}"
case "$WORK" in /*) ;; *) WORK="$ROOT/$WORK" ;; esac
GARAGE_DIR="$ROOT/target/garage-bench"
RESTORE="$ROOT/target/bench-restore"
METRICS="$ROOT/target/bench-metrics"
REHOST_BIN="${REHOST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rehost}"
BUCKET=bench
if [ -z "${BENCH_RESULTS:-}" ]; then
    if [ -z "$BENCH_SMALL$BENCH_PROFILE$DROP_ASKED$SYNC_PEERS" ] && [ "$BENCH_TOOLS" = "rehost tar restic" ]; then
        BENCH_RESULTS="$ROOT/bench/RESULTS.md"
    else
        BENCH_RESULTS="$WORK/RESULTS.md"
    fi
fi

has_tool() { [[ " $BENCH_TOOLS " == *" $1 "* ]]; }
say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

TOOLS=()  # BENCH_TOOLS in order, without duplicates
for t in $BENCH_TOOLS; do
    case "$t" in rehost|tar|restic) ;; *) die "unknown tool in BENCH_TOOLS: $t (rehost, tar, restic)" ;; esac
    [[ " ${TOOLS[*]} " == *" $t "* ]] || TOOLS+=("$t")
done
[ "${#TOOLS[@]}" -gt 0 ] || die "BENCH_TOOLS is empty"
[[ "$BENCH_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$BENCH_ROUNDS'"
[[ "$BENCH_SETTLE" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_SETTLE must be a number of seconds, not '$BENCH_SETTLE'"
[ -z "$BENCH_PROFILE" ] || [ -z "$BENCH_SMALL" ] || die "BENCH_SMALL and BENCH_PROFILE exclude each other"

# BENCH_DROP_CACHES: DROP=1 when the page cache can be dropped; otherwise
# DROP_NOTE says why not (and the data is warmed before every backup instead).
DROP=""
DROP_NOTE=""
if [ -n "$DROP_ASKED" ]; then
    if [ "$(id -u)" != 0 ]; then
        DROP_NOTE="caches not dropped: not root"
    elif ! (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        DROP_NOTE="caches not dropped: /proc/sys/vm/drop_caches is not writable"
    else
        DROP=1
    fi
    [ -z "$DROP_NOTE" ] || echo "bench: $DROP_NOTE; reading the data before every backup instead" >&2
fi

# The caller's AWS_*/RESTIC_* settings (AWS_CA_BUNDLE, profiles, ...) must not
# change what is measured: drop them all, set only what each tool needs.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(AWS_|RESTIC_|RCLONE_)' || true)

# --- preparation -------------------------------------------------------------------

# One run at a time in a checkout: another would stop this one's Garage and
# delete its restored trees (the same paths under target/). Garage does not
# inherit the lock (9>&- below).
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.bench-run.lock"
flock -n 9 || die "another bench/run.sh is running in this checkout (it holds $ROOT/target/.bench-run.lock)"

if has_tool rehost && [ ! -x "$REHOST_BIN" ]; then
    say "building rehost (cargo build --release -p rehost)"
    cargo build --release -p rehost
    [ -x "$REHOST_BIN" ] || die "$REHOST_BIN missing after the build"
fi

say "tools"
scripts/install-tools.sh --bench

say "Garage in $GARAGE_DIR (fresh)"
scripts/garage.sh stop "$GARAGE_DIR" >/dev/null
rm -rf "$GARAGE_DIR"
# shellcheck disable=SC2329
cleanup() {
    local rc=$?
    if [ -z "${BENCH_KEEP:-}" ]; then
        scripts/garage.sh stop "$GARAGE_DIR" >/dev/null 2>&1 || true
        rm -rf "$GARAGE_DIR" "$RESTORE"
    else
        echo "bench: BENCH_KEEP set: Garage still running from $GARAGE_DIR (scripts/garage.sh stop $GARAGE_DIR)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
scripts/garage.sh start "$GARAGE_DIR" >/dev/null 9>&-
scripts/garage.sh bucket "$BUCKET" "$GARAGE_DIR" >/dev/null
# shellcheck disable=SC1091
. "$GARAGE_DIR/env"
ENDPOINT="$REHOST_TEST_S3_ENDPOINT"
CREDS="$REHOST_TEST_S3_CREDENTIALS_FILE"
KEY_ID="$REHOST_TEST_S3_ACCESS_KEY_ID"
SECRET="$REHOST_TEST_S3_SECRET_ACCESS_KEY"
unset REHOST_TEST_S3_SECRET_ACCESS_KEY REHOST_TEST_GARAGE_ADMIN_TOKEN

mkdir -p "$WORK"
rm -rf "$RESTORE" "$METRICS"
mkdir -p "$RESTORE" "$METRICS"
RUNID="$(date -u +%Y%m%dT%H%M%SZ)-$$"

# awscli: explicit credentials and config (path-style, checksums only when required).
AWS_CFG="$WORK/aws-config"
cat >"$AWS_CFG" <<'EOF'
[default]
region = garage
s3 =
    addressing_style = path
request_checksum_calculation = when_required
response_checksum_validation = when_required
EOF
export AWS_CONFIG_FILE="$AWS_CFG" AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_ACCESS_KEY_ID="$KEY_ID" AWS_SECRET_ACCESS_KEY="$SECRET" AWS_DEFAULT_REGION=garage
export BENCH_S3_ENDPOINT="$ENDPOINT"  # used by the measured command strings below
awss3() { aws --endpoint-url "$ENDPOINT" s3 "$@"; }

stored_bytes() {  # $1: s3://bucket/prefix/
    awss3 ls --recursive --summarize "$1" | sed -n 's/^ *Total Size: *//p' | tail -n 1
}

say "data in $DATA"
DATA_DESC=""
if [ -n "$BENCH_PROFILE" ]; then
    python3 bench/gen-data.py --profile "$BENCH_PROFILE" "$DATA"
    DATA_DESC="$(python3 bench/gen-data.py --profile "$BENCH_PROFILE" --describe)"
elif [ -n "$BENCH_SMALL" ]; then
    python3 bench/gen-data.py --small "$DATA"
else
    python3 bench/gen-data.py "$DATA"
fi
read -r DATA_FILES DATA_BYTES < <(python3 -c '
import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["files"], s["bytes"])' "$DATA/.complete")

# --- measurement -------------------------------------------------------------------

TSV="$WORK/results-$RUNID.tsv"
printf 'tool\top\tround\tpos\twall_s\tcpu_s\tmaxrss_kib\tstored_bytes\texit\tverify\tiowait_s\tsteal_s\tdisk_write_mib\tdisk_busy_s\tdiscard_mib\tdirty_max_mib\n' >"$TSV"
FAILED=0
PENDING_RM=()  # restored trees to delete before the next measurement's sync
POS=0          # position of the current measurement within its round

# settle and measure (BENCH_SETTLE, DROP, PENDING_RM, WORK, FAILED): bench/lib.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
sample_disk_of "$ROOT/target"

record() {  # tool op round stored verify
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$1" "$2" "$3" "$POS" "$M_WALL" "$M_CPU" "$M_RSS" "$4" "$M_EXIT" "$5" "$M_SYS" >>"$TSV"
}

verify() {  # $1 restored dir; sets V to "OK (...)" or "FAIL ..."
    local out t0
    t0="$SECONDS"
    if out="$(python3 bench/tree-manifest.py compare "$DATA" "$1" 2>&1)"; then
        echo "$out ($((SECONDS - t0)) s)" >&2
        V="OK (mtimes $(tail -n 1 <<<"$out" | sed -n 's/.*; file mtimes //p'))"
    else
        echo "$out" >&2
        FAILED=1
        V="FAIL ($(tail -n 1 <<<"$out" | sed -n 's/.*: FAIL (\(.*\));.*/\1/p'))"
    fi
}

# restored TOOL ROUND TREE DIR: compare TREE with the source (when the restore
# succeeded), record the round, and queue DIR (the round's restore directory)
# for deletion before the next measurement. The last round's trees stay until
# the end: nothing measured follows them that their deletion could disturb, and
# BENCH_KEEP keeps them (BENCH_KEEP_LAST_TREES=0: queued like the others).
restored() {
    local tool="$1" round="$2" tree="$3" dir="$4"
    if [ "$M_EXIT" = 0 ]; then verify "$tree"; else V="FAIL (exit $M_EXIT)"; fi
    record "$tool" restore "$round" "-" "$V"
    if [ "$round" -lt "$BENCH_ROUNDS" ] || [ -n "$RM_LAST_TREES" ]; then PENDING_RM+=("$dir"); fi
}

# warm_data: read the data set so every backup starts from the same warm page cache
warm_data() { tar cf - -C "$DATA" . >/dev/null; }
# before_backup: warm the data, unless the page cache is dropped before every measurement
before_backup() { [ -n "$DROP" ] || warm_data; }

rehost_prefix() { echo "rehost-$RUNID-r$1"; }
tar_url() { echo "s3://$BUCKET/tar-$RUNID-r$1/data.tar.gz"; }
restic_repo() { echo "s3:$ENDPOINT/$BUCKET/restic-$RUNID-r$1"; }

rehost_conf() {  # $1 file, $2 storage prefix, $3 state path
    cat >"$1" <<EOF
host: bench
storage:
  url: s3://$BUCKET/$2
  endpoint: $ENDPOINT
  region: garage
  path_style: true
  credentials_file: $CREDS
state:
  data:
    path: $3
metrics:
  textfile_dir: $METRICS
EOF
}

# rehost's credentials come from credentials_file, not from the environment
REHOST_ENV=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE)
RESTIC_S3=(-o s3.region=garage -o s3.bucket-lookup=path)
export RESTIC_PASSWORD=bench-password

backup_rehost() {  # round
    local r="$1" conf="$WORK/rehost-backup-r$1.yaml"
    rehost_conf "$conf" "$(rehost_prefix "$r")" "$DATA"
    before_backup
    measure rehost backup "$r" "$WORK/rehost-backup-r$r.log" "${REHOST_ENV[@]}" "$REHOST_BIN" -c "$conf" backup data
    record rehost backup "$r" "$(stored_bytes "s3://$BUCKET/$(rehost_prefix "$r")/")" "-"
}

backup_tar() {  # round
    local r="$1"
    before_backup
    measure tar backup "$r" "$WORK/tar-backup-r$r.log" bash -c \
        'set -o pipefail; tar czf - -C "$1" . | aws --endpoint-url "$BENCH_S3_ENDPOINT" s3 cp --only-show-errors - "$2"' \
        _ "$DATA" "$(tar_url "$r")"
    record tar backup "$r" "$(stored_bytes "s3://$BUCKET/tar-$RUNID-r$r/")" "-"
}

backup_restic() {  # round
    local r="$1"
    export RESTIC_REPOSITORY RESTIC_CACHE_DIR
    RESTIC_REPOSITORY="$(restic_repo "$r")"
    RESTIC_CACHE_DIR="$WORK/restic-cache-$RUNID-backup-r$r"
    rm -rf "$RESTIC_CACHE_DIR"
    restic "${RESTIC_S3[@]}" init -q >"$WORK/restic-init-r$r.log" 2>&1 \
        || { cat "$WORK/restic-init-r$r.log" >&2; die "restic init failed (round $r)"; }
    before_backup
    measure restic backup "$r" "$WORK/restic-backup-r$r.log" bash -c \
        'cd "$1" && restic "${@:2}" backup -q .' _ "$DATA" "${RESTIC_S3[@]}"
    record restic backup "$r" "$(stored_bytes "s3://$BUCKET/restic-$RUNID-r$r/")" "-"
    rm -rf "$RESTIC_CACHE_DIR"
}

# Restores all read the backup made in round 1.
restore_rehost() {  # round
    local r="$1" dir="$RESTORE/rehost-r$1" conf="$WORK/rehost-restore-r$1.yaml"
    rm -rf "$dir"
    mkdir -p "$dir"  # rehost creates the target ($dir/data) itself
    rehost_conf "$conf" "$(rehost_prefix 1)" "$dir/data"
    measure rehost restore "$r" "$WORK/rehost-restore-r$r.log" \
        "${REHOST_ENV[@]}" "$REHOST_BIN" -c "$conf" restore data --force
    restored rehost "$r" "$dir/data" "$dir"
}

restore_tar() {  # round
    local r="$1" dir="$RESTORE/tar-r$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    measure tar restore "$r" "$WORK/tar-restore-r$r.log" bash -c \
        'set -o pipefail; aws --endpoint-url "$BENCH_S3_ENDPOINT" s3 cp --only-show-errors "$1" - | tar xzf - -C "$2"'"${SYNC_PEERS:+ && sync}" \
        _ "$(tar_url 1)" "$dir"
    restored tar "$r" "$dir" "$dir"
}

restore_restic() {  # round
    local r="$1" dir="$RESTORE/restic-r$1"
    export RESTIC_REPOSITORY RESTIC_CACHE_DIR
    RESTIC_REPOSITORY="$(restic_repo 1)"
    # a restore on a fresh host has no local cache
    RESTIC_CACHE_DIR="$WORK/restic-cache-$RUNID-restore-r$r"
    rm -rf "$dir" "$RESTIC_CACHE_DIR"
    mkdir -p "$dir"
    if [ -n "$SYNC_PEERS" ]; then
        measure restic restore "$r" "$WORK/restic-restore-r$r.log" bash -c \
            'restic "${@:2}" restore latest -q --target "$1" && sync' _ "$dir" "${RESTIC_S3[@]}"
    else
        measure restic restore "$r" "$WORK/restic-restore-r$r.log" \
            restic "${RESTIC_S3[@]}" restore latest -q --target "$dir"
    fi
    restored restic "$r" "$dir" "$dir"
    rm -rf "$RESTIC_CACHE_DIR"
}

# round_order R: the tools of round R, BENCH_TOOLS order rotated left by R-1
round_order() {
    local n="${#TOOLS[@]}" i
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${TOOLS[$(((i + $1 - 1) % n))]}"
    done
}

# All backup rounds (each reading the same warm data), then all restore rounds.
for op in backup restore; do
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        mapfile -t order < <(round_order "$round")
        say "$op round $round/$BENCH_ROUNDS: ${order[*]}"
        POS=0
        for t in "${order[@]}"; do
            POS=$((POS + 1))
            "${op}_$t" "$round"
        done
    done
done

# rehost's metrics must pass promtool
PROMTOOL="-"
if has_tool rehost; then
    PROMTOOL="no metrics file"
    shopt -s nullglob
    prom_files=("$METRICS"/*.prom)
    shopt -u nullglob
    if [ "${#prom_files[@]}" -gt 0 ]; then
        PROMTOOL="OK"
        for f in "${prom_files[@]}"; do
            if ! promtool check metrics <"$f" >"$WORK/promtool.log" 2>&1; then
                PROMTOOL="FAIL ($(basename "$f"): $(head -n 1 "$WORK/promtool.log"))"
            fi
        done
    fi
fi

# --- report ------------------------------------------------------------------------

versions() {
    has_tool rehost && echo "rehost: $("$REHOST_BIN" --version 2>/dev/null | head -n 1 || echo '?')"
    echo "garage: $(scripts/garage.sh install 2>/dev/null | head -n 1)"
    has_tool restic && echo "restic: $(restic version | head -n 1)"
    has_tool tar && echo "tar: $(tar --version | head -n 1); gzip: $(gzip --version | head -n 1); aws: $(aws --version 2>&1 | head -n 1)"
    true
}

mkdir -p "$(dirname "$BENCH_RESULTS")"
if [ -n "$DROP" ]; then CACHES=dropped; elif [ -n "$DROP_ASKED" ]; then CACHES="$DROP_NOTE"; else CACHES=warm; fi
python3 bench/report.py \
    --tsv "$TSV" --out "$BENCH_RESULTS" --data "$DATA" --files "$DATA_FILES" --bytes "$DATA_BYTES" \
    --small "${BENCH_SMALL:+1}" --promtool "$PROMTOOL" --versions "$(versions)" --runid "$RUNID" \
    --rounds "$BENCH_ROUNDS" --settle "$BENCH_SETTLE" --tools "${TOOLS[*]}" \
    --data-desc "$DATA_DESC" --profile "$BENCH_PROFILE" --caches "$CACHES" --sync-peers "$SYNC_PEERS" \
    --work "$WORK" --meta "${TSV%.tsv}.json"
say "report: $BENCH_RESULTS"
cat "$BENCH_RESULTS"
exit "$FAILED"
