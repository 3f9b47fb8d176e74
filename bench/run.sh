#!/usr/bin/env bash
# Backup/restore benchmark: rehost against restic and the tar|gzip|aws pipeline,
# all against the same real single-node Garage on loopback. Writes a report
# (bench/RESULTS.md for a full run).
#
#   bench/run.sh                        full run (~1 GiB data set)
#   BENCH_SMALL=1 bench/run.sh          ~20 MiB data set (quick check of the harness)
#   BENCH_TOOLS="tar restic" bench/run.sh   only some tools (default: "rehost tar restic")
#
# Environment:
#   BENCH_DATA      data directory (default target/bench-data, target/bench-data-small with BENCH_SMALL)
#   BENCH_RESULTS   report file (default bench/RESULTS.md for a full run with every tool,
#                   target/bench/RESULTS.md otherwise)
#   BENCH_KEEP=1    keep Garage running and its data, and the restored trees, afterwards
#   REHOST_BIN      rehost binary (default target/release/rehost; built when missing)
#
# Method: each operation runs once, under /usr/bin/time -v (wall seconds, CPU
# seconds, maximum resident set size). The data is read once before the runs
# (tar cf - DATA >/dev/null) so every tool starts with the same warm page cache,
# and `sync` runs before every measurement. For shell pipelines the peak RSS is
# that of the largest single process of the pipeline, not the sum.

# The measured `bash -c '...'` commands get their arguments as "$1" "$2":
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
BENCH_SMALL="${BENCH_SMALL:-0}"
[ "$BENCH_SMALL" = 0 ] && BENCH_SMALL=""
BENCH_TOOLS="${BENCH_TOOLS:-rehost tar restic}"
if [ -n "$BENCH_SMALL" ]; then
    DATA="${BENCH_DATA:-$ROOT/target/bench-data-small}"
else
    DATA="${BENCH_DATA:-$ROOT/target/bench-data}"
fi
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
WORK="$ROOT/target/bench"
GARAGE_DIR="$ROOT/target/garage-bench"
RESTORE="$ROOT/target/bench-restore"
METRICS="$ROOT/target/bench-metrics"
REHOST_BIN="${REHOST_BIN:-$ROOT/target/release/rehost}"
BUCKET=bench
if [ -z "${BENCH_RESULTS:-}" ]; then
    if [ -z "$BENCH_SMALL" ] && [ "$BENCH_TOOLS" = "rehost tar restic" ]; then
        BENCH_RESULTS="$ROOT/bench/RESULTS.md"
    else
        BENCH_RESULTS="$WORK/RESULTS.md"
    fi
fi

has_tool() { [[ " $BENCH_TOOLS " == *" $1 "* ]]; }
say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

for t in $BENCH_TOOLS; do
    case "$t" in rehost|tar|restic) ;; *) die "unknown tool in BENCH_TOOLS: $t (rehost, tar, restic)" ;; esac
done

# The caller's AWS_*/RESTIC_* settings (AWS_CA_BUNDLE, profiles, ...) must not
# change what is measured: drop them all, set only what each tool needs.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(AWS_|RESTIC_|RCLONE_)' || true)

# --- preparation -------------------------------------------------------------------

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
scripts/garage.sh start "$GARAGE_DIR" >/dev/null
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
if [ -n "$BENCH_SMALL" ]; then
    python3 bench/gen-data.py --small "$DATA"
else
    python3 bench/gen-data.py "$DATA"
fi
read -r DATA_FILES DATA_BYTES < <(python3 -c '
import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["files"], s["bytes"])' "$DATA/.complete")

say "warming the page cache (tar cf - DATA > /dev/null)"
tar cf - -C "$DATA" . >/dev/null

# --- measurement -------------------------------------------------------------------

TSV="$WORK/results-$RUNID.tsv"
printf 'tool\top\twall_s\tcpu_s\tmaxrss_kib\tstored_bytes\texit\tverify\n' >"$TSV"
FAILED=0

# measure TOOL OP LOG CMD...: run CMD once under /usr/bin/time -v, output to LOG;
# sets M_WALL M_CPU M_RSS M_EXIT
measure() {
    local tool="$1" op="$2" logf="$3"
    shift 3
    local tf="$WORK/time-$tool-$op.txt" t0 t1
    sync
    echo "bench: $tool $op ..." >&2
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
        echo "bench: $tool $op FAILED (exit $M_EXIT); last lines of $logf:" >&2
        tail -n 25 "$logf" >&2
    else
        echo "bench: $tool $op: ${M_WALL}s wall, ${M_CPU}s CPU, $((M_RSS / 1024)) MiB peak RSS" >&2
    fi
}

record() {  # tool op stored verify
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$M_WALL" "$M_CPU" "$M_RSS" "$3" "$M_EXIT" "$4" >>"$TSV"
}

verify() {  # $1 restored dir; sets V to "OK (...)" or "FAIL ..."
    local out
    if out="$(python3 bench/tree-manifest.py compare "$DATA" "$1" 2>&1)"; then
        echo "$out" >&2
        V="OK (mtimes $(tail -n 1 <<<"$out" | sed -n 's/.*; file mtimes //p'))"
    else
        echo "$out" >&2
        FAILED=1
        V="FAIL ($(tail -n 1 <<<"$out" | sed -n 's/.*: FAIL (\(.*\));.*/\1/p'))"
    fi
}

rehost_conf() {  # $1 file, $2 state path
    cat >"$1" <<EOF
host: bench
storage:
  url: s3://$BUCKET/rehost-$RUNID
  endpoint: $ENDPOINT
  region: garage
  path_style: true
  credentials_file: $CREDS
state:
  data:
    path: $2
metrics:
  textfile_dir: $METRICS
EOF
}

# Backups first (all reading the same warm data), then restores.
if has_tool rehost; then
    CONF="$WORK/rehost-backup.yaml"
    CONF2="$WORK/rehost-restore.yaml"
    rehost_conf "$CONF" "$DATA"
    mkdir -p "$RESTORE/rehost"
    rehost_conf "$CONF2" "$RESTORE/rehost/data"
    # credentials come from credentials_file, not from the environment
    measure rehost backup "$WORK/rehost-backup.log" \
        env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE \
        "$REHOST_BIN" -c "$CONF" backup data
    record rehost backup "$(stored_bytes "s3://$BUCKET/rehost-$RUNID/")" "-"
fi

if has_tool tar; then
    TAR_URL="s3://$BUCKET/tar-$RUNID/data.tar.gz"
    measure tar backup "$WORK/tar-backup.log" bash -c \
        'set -o pipefail; tar czf - -C "$1" . | aws --endpoint-url "$BENCH_S3_ENDPOINT" s3 cp --only-show-errors - "$2"' \
        _ "$DATA" "$TAR_URL"
    record tar backup "$(stored_bytes "s3://$BUCKET/tar-$RUNID/")" "-"
fi

if has_tool restic; then
    export RESTIC_PASSWORD=bench-password
    export RESTIC_REPOSITORY="s3:$ENDPOINT/$BUCKET/restic-$RUNID"
    export RESTIC_CACHE_DIR="$WORK/restic-cache-$RUNID"
    restic -o s3.region=garage -o s3.bucket-lookup=path init -q >"$WORK/restic-init.log" 2>&1 \
        || { cat "$WORK/restic-init.log" >&2; die "restic init failed"; }
    measure restic backup "$WORK/restic-backup.log" bash -c \
        'cd "$1" && restic -o s3.region=garage -o s3.bucket-lookup=path backup -q .' _ "$DATA"
    record restic backup "$(stored_bytes "s3://$BUCKET/restic-$RUNID/")" "-"
    # a restore on a fresh host has no local cache
    rm -rf "$RESTIC_CACHE_DIR"
fi

if has_tool rehost; then
    rm -rf "$RESTORE/rehost/data"
    measure rehost restore "$WORK/rehost-restore.log" \
        env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE \
        "$REHOST_BIN" -c "$CONF2" restore data --force
    if [ "$M_EXIT" = 0 ]; then verify "$RESTORE/rehost/data"; else V="FAIL (exit $M_EXIT)"; fi
    record rehost restore "-" "$V"
fi

if has_tool tar; then
    mkdir -p "$RESTORE/tar"
    measure tar restore "$WORK/tar-restore.log" bash -c \
        'set -o pipefail; aws --endpoint-url "$BENCH_S3_ENDPOINT" s3 cp --only-show-errors "$1" - | tar xzf - -C "$2"' \
        _ "$TAR_URL" "$RESTORE/tar"
    if [ "$M_EXIT" = 0 ]; then verify "$RESTORE/tar"; else V="FAIL (exit $M_EXIT)"; fi
    record tar restore "-" "$V"
fi

if has_tool restic; then
    mkdir -p "$RESTORE/restic"
    measure restic restore "$WORK/restic-restore.log" \
        restic -o s3.region=garage -o s3.bucket-lookup=path restore latest -q --target "$RESTORE/restic"
    if [ "$M_EXIT" = 0 ]; then verify "$RESTORE/restic"; else V="FAIL (exit $M_EXIT)"; fi
    record restic restore "-" "$V"
    rm -rf "$RESTIC_CACHE_DIR"
fi

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
python3 bench/report.py \
    --tsv "$TSV" --out "$BENCH_RESULTS" --data "$DATA" --files "$DATA_FILES" --bytes "$DATA_BYTES" \
    --small "${BENCH_SMALL:+1}" --promtool "$PROMTOOL" --versions "$(versions)" --runid "$RUNID"
say "report: $BENCH_RESULTS"
cat "$BENCH_RESULTS"
exit "$FAILED"
