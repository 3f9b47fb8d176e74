#!/usr/bin/env bash
# Prometheus backup benchmark: `rehost backup` of a `kind: prometheus` entry
# (admin-API snapshot, one object per block) against `tar czf - DIR | aws s3
# cp -`, both to the same single-node Garage on loopback. Writes
# bench/RESULTS-prometheus.md.
#
#   bench/prometheus.sh                      full run
#   BENCH_PROM_MB=64 bench/prometheus.sh     a small data set (quick check; report under target/)
#
# Data: a Prometheus data directory of 2 h blocks backfilled with promtool from
# bench/gen-prom.py (random-walk gauges, 1000 series, one sample every 10 s),
# generated once into target/prombench/data and reused while its parameters
# stay the same. Generation stops at BENCH_PROM_MB (default 1024) MiB of blocks
# or after BENCH_PROM_GEN_SECONDS (default 300) seconds, whichever comes first;
# the report gives the size actually generated. One more block, generated
# apart, is added for the incremental backup.
#
# Each of BENCH_ROUNDS (default 3) rounds, to a fresh prefix:
#   rehost full         Prometheus (admin API on, no scrape jobs) on the data;
#                       `rehost backup` uploads every block.
#   rehost incremental  Prometheus stopped, the extra block added, restarted;
#                       `rehost backup` again: uploads the new block only.
#   tar full / tar incremental   `tar czf - -C DATA . | aws s3 cp - s3://…` of
#                       the same directory without / with the extra block
#                       (a tarball has no increments: it uploads everything).
# The rehost and tar halves alternate order from round to round. Every
# measurement runs under /usr/bin/time (wall seconds, peak RSS of the largest
# process) after `sync` and BENCH_SETTLE (default 3) seconds. Bytes uploaded:
# rehost's `rehost_job_last_bytes` metric, the size of the tar object.
# The report gives medians. REHOST_BIN defaults to target/release/rehost (built
# when missing or older than the sources); BENCH_KEEP=1 keeps Garage running.
# The measured `bash -c '...'` commands get their arguments as "$@":
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
ROUNDS="${BENCH_ROUNDS:-3}"
TARGET_MB="${BENCH_PROM_MB:-1024}"
GEN_SECONDS="${BENCH_PROM_GEN_SECONDS:-300}"
SETTLE="${BENCH_SETTLE:-3}"
SERIES=1000
STEP=10
WORK="$ROOT/target/prombench"
DATA="$WORK/data"
EXTRA="$WORK/extra"
GARAGE_DIR="$ROOT/target/garage-prombench"
REHOST_BIN="${REHOST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rehost}"
if [ "$TARGET_MB" -ge 1024 ]; then
    RESULTS="${BENCH_RESULTS:-$ROOT/bench/RESULTS-prometheus.md}"
else
    RESULTS="${BENCH_RESULTS:-$WORK/RESULTS-prometheus.md}"
fi

log() { echo "prom-bench: $*" >&2; }
die() { echo "prom-bench: error: $*" >&2; exit 1; }
for t in prometheus promtool aws python3 /usr/bin/time curl; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t (scripts/install-tools.sh)"
done

# --- data ------------------------------------------------------------------
blocks_mb() { du -sm --exclude=wal --exclude=chunks_head --exclude=snapshots "$1" | cut -f1; }
new_block() { # DIR START: backfills one 2 h window into DIR, prints the new block's ULID
    local dir=$1 start=$2 before after
    before=$(ls "$dir" 2>/dev/null || true)
    python3 bench/gen-prom.py "$SERIES" "$start" 2 "$STEP" >"$WORK/window.om"
    promtool tsdb create-blocks-from openmetrics "$WORK/window.om" "$dir" >/dev/null
    after=$(ls "$dir")
    comm -13 <(echo "$before" | sort) <(echo "$after" | sort) | head -1
}
PARAMS="series=$SERIES step=$STEP target=$TARGET_MB gen=$GEN_SECONDS"
if [ ! -f "$WORK/.generated" ] || [ "$(cat "$WORK/.generated")" != "$PARAMS" ]; then
    rm -rf "$WORK"; mkdir -p "$DATA" "$EXTRA"
    # Windows end 4 h before an aligned "now" and go back in time; the extra
    # block is the newest window, as a fresh block of a running server is.
    now=$(( $(date +%s) / 7200 * 7200 ))
    start=$(( now - 6 * 3600 ))
    began=$(date +%s)
    n=0
    while [ "$(blocks_mb "$DATA")" -lt "$TARGET_MB" ] && [ $(( $(date +%s) - began )) -lt "$GEN_SECONDS" ]; do
        new_block "$DATA" "$start" >/dev/null
        start=$(( start - 7200 )); n=$(( n + 1 ))
        [ $(( n % 10 )) = 0 ] && log "generated $n blocks, $(blocks_mb "$DATA") MiB"
    done
    new_block "$EXTRA" $(( now - 4 * 3600 )) >"$WORK/extra.ulid"
    rm -f "$WORK/window.om"
    echo "$(( $(date +%s) - began ))" >"$WORK/gen-seconds"
    echo "$PARAMS" >"$WORK/.generated"
fi
EXTRA_ULID=$(cat "$WORK/extra.ulid")
[ -n "$EXTRA_ULID" ] && [ -d "$EXTRA/$EXTRA_ULID" ] || die "no extra block in $EXTRA"
rm -rf "${DATA:?}/$EXTRA_ULID"
DATA_MB=$(blocks_mb "$DATA")
DATA_BLOCKS=$(find "$DATA" -mindepth 1 -maxdepth 1 -type d -name '0*' | wc -l)
EXTRA_MB=$(du -sm "$EXTRA/$EXTRA_ULID" | cut -f1)
log "data: $DATA_BLOCKS blocks, $DATA_MB MiB (+1 block of $EXTRA_MB MiB), generated in $(cat "$WORK/gen-seconds") s"

if [ ! -x "$REHOST_BIN" ] || [ -n "$(find agent/src jobs/src -newer "$REHOST_BIN" -name '*.rs' -print -quit)" ]; then
    log "building target/release/rehost"
    cargo build --release -p rehost
fi

# --- store -----------------------------------------------------------------
scripts/garage.sh start "$GARAGE_DIR" >/dev/null
# shellcheck disable=SC1091
. "$GARAGE_DIR/env"
scripts/garage.sh bucket prombench "$GARAGE_DIR" >/dev/null
PROM_PID=""
cleanup() {
    [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    [ "${BENCH_KEEP:-0}" = 1 ] || scripts/garage.sh stop "$GARAGE_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for v in $(env | grep -o '^AWS_[A-Z_]*' || true); do unset "$v"; done
export AWS_ACCESS_KEY_ID="$REHOST_TEST_S3_ACCESS_KEY_ID"
export AWS_SECRET_ACCESS_KEY="$REHOST_TEST_S3_SECRET_ACCESS_KEY"
export AWS_DEFAULT_REGION="$REHOST_TEST_S3_REGION"
export AWS_CONFIG_FILE="$WORK/aws.cfg"
printf '[default]\ns3 =\n    addressing_style = path\n' >"$AWS_CONFIG_FILE"
AWS=(aws --endpoint-url "$REHOST_TEST_S3_ENDPOINT")

# --- prometheus --------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' >"$WORK/prometheus.yml"
prom_start() {
    prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$DATA" \
        --web.listen-address="127.0.0.1:$PORT" --web.enable-admin-api \
        --storage.tsdb.retention.time=100y \
        --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h \
        >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    for _ in $(seq 1 120); do
        curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "prometheus not ready after 60 s (see $WORK/prometheus.log)"
}
prom_stop() {
    kill "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true; PROM_PID=""
    rm -rf "$DATA/wal" "$DATA/chunks_head" "$DATA/snapshots" "$DATA/lock" "$DATA/queries.active"
}

# --- measurements ------------------------------------------------------------
RAW="$WORK/raw.tsv"; : >"$RAW"
measure() { # NAME ROUND BYTES_CMD -- CMD...: appends "name round wall rss bytes" to RAW
    local name=$1 round=$2 bytes_cmd=$3; shift 4
    sync; sleep "$SETTLE"
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" \
        || { cat "$WORK/out" "$WORK/err" >&2; die "$name failed"; }
    local bytes; bytes=$(eval "$bytes_cmd")
    read -r wall rss <"$WORK/time"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$wall" "$rss" "$bytes" >>"$RAW"
    log "round $round $name: ${wall}s, $(( bytes / 1048576 )) MiB uploaded, peak RSS $(( rss / 1024 )) MiB"
}
rehost_bytes() { awk '/^rehost_job_last_bytes/ { printf "%d", $2 }' "$WORK/metrics/rehost-backup-prom.prom"; }
tar_bytes() { "${AWS[@]}" s3api head-object --bucket prombench --key "$1" --query ContentLength --output text; }

run_rehost() {
    local r=$1
    mkdir -p "$WORK/metrics"
    cat >"$WORK/rehost.yaml" <<CFG
host: bench
storage:
  url: s3://prombench/rehost-$r
  endpoint: $REHOST_TEST_S3_ENDPOINT
  region: $REHOST_TEST_S3_REGION
  path_style: true
  credentials_file: $REHOST_TEST_S3_CREDENTIALS_FILE
state:
  prom:
    path: $DATA
    kind: prometheus
    api: http://127.0.0.1:$PORT
metrics:
  textfile_dir: $WORK/metrics
CFG
    prom_start
    measure "rehost full" "$r" rehost_bytes -- "$REHOST_BIN" -q -c "$WORK/rehost.yaml" backup
    prom_stop
    cp -a "$EXTRA/$EXTRA_ULID" "$DATA/"
    prom_start
    measure "rehost incremental" "$r" rehost_bytes -- "$REHOST_BIN" -q -c "$WORK/rehost.yaml" backup
    prom_stop
    rm -rf "${DATA:?}/$EXTRA_ULID"
}
run_tar() {
    local r=$1
    measure "tar full" "$r" "tar_bytes tar-$r/full.tar.gz" -- \
        bash -c 'tar czf - -C "$1" . | "${@:2}" s3 cp - "s3://prombench/tar-$0/full.tar.gz"' \
        "$r" "$DATA" "${AWS[@]}"
    cp -a "$EXTRA/$EXTRA_ULID" "$DATA/"
    measure "tar incremental" "$r" "tar_bytes tar-$r/incremental.tar.gz" -- \
        bash -c 'tar czf - -C "$1" . | "${@:2}" s3 cp - "s3://prombench/tar-$0/incremental.tar.gz"' \
        "$r" "$DATA" "${AWS[@]}"
    rm -rf "${DATA:?}/$EXTRA_ULID"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $(( r % 2 )) = 1 ]; then run_rehost "$r"; run_tar "$r"; else run_tar "$r"; run_rehost "$r"; fi
done

# --- report ------------------------------------------------------------------
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$RAW" "$RESULTS" "$DATA_BLOCKS" "$DATA_MB" "$EXTRA_MB" "$(cat "$WORK/gen-seconds")" "$ROUNDS" "$TARGET_MB" "$REHOST_BIN" "$LOAD" <<'PY'
import statistics, sys, collections, datetime, os
raw, out, blocks, mb, extra_mb, gen_s, rounds, target, rehost_bin, load = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(raw):
    name, r, wall, rss, b = line.rstrip("\n").split("\t")
    rows[name].append((float(wall), int(rss), int(b)))
def med(name, i):
    return statistics.median(v[i] for v in rows[name])
def mib(b):
    return f"{b / 1048576:,.1f} MiB"
lines = [
    "# Prometheus backup benchmark",
    "",
    f"`bench/prometheus.sh`, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
    f"{os.cpu_count()} cores, Garage on loopback, medians of {rounds} rounds.",
    "",
    f"Data: a Prometheus data directory of {blocks} blocks of 2 h, {mb} MiB "
    f"(backfilled with promtool from random-walk gauges, generated in {gen_s} s"
    + (f"; the {target} MiB asked for did not fit in the generation time limit" if int(mb) < int(target) * 0.95 else "")
    + f"). The incremental backup adds one block of {extra_mb} MiB.",
    "",
    f"rehost binary: `{os.path.relpath(rehost_bin)}`"
    + (" (a debug build: only zlib-rs, flate2 and sha2 are optimized)" if "/debug/" in rehost_bin else "")
    + f". Load average at the end of the run: {load}.",
    "",
    "| | full: time | full: uploaded | incremental: time | incremental: uploaded | peak RSS |",
    "|---|---:|---:|---:|---:|---:|",
]
for tool in ["rehost", "tar"]:
    label = "rehost (snapshot, per block)" if tool == "rehost" else "tar czf \\| aws s3 cp"
    f, i = f"{tool} full", f"{tool} incremental"
    rss = max(med(f, 1), med(i, 1)) / 1024
    lines.append(
        f"| {label} | {med(f, 0):.1f} s | {mib(med(f, 2))} | {med(i, 0):.1f} s | {mib(med(i, 2))} | {rss:.0f} MiB |")
lines += ["", "Every round:", "", "| measurement | round | wall | peak RSS | uploaded |", "|---|---:|---:|---:|---:|"]
for line in open(raw):
    name, r, wall, rss, b = line.rstrip("\n").split("\t")
    lines.append(f"| {name} | {r} | {float(wall):.1f} s | {int(rss) // 1024} MiB | {mib(int(b))} |")
lines += ["", "rehost's time includes asking Prometheus for the snapshot and removing it; "
          "its uploaded bytes include the manifest. tar's peak RSS is that of the largest "
          "process of the pipeline (aws).", ""]
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
log "report: $RESULTS"
