#!/usr/bin/env bash
# The cost of replication: `rehost backup`, `restore` and `pull` timed against a
# 3-node Garage cluster on loopback (replication_factor = 3, three zones;
# scripts/garage-cluster.sh) and against a single node (scripts/garage.sh),
# both in the same run. Writes bench/RESULTS-cluster.md.
#
#   bench/cluster.sh                               ~510 MiB mixed data set (profile mixed-512m)
#   CLUSTER_BENCH_PROFILE=mixed-64m bench/cluster.sh   ~64 MiB (a quick check of the harness)
#
# Environment:
#   CLUSTER_BENCH_PROFILE  a profile of bench/gen-data.py (default mixed-512m); the data set
#                   is generated once into target/bench-data-PROFILE
#   BENCH_ROUNDS    rounds of every (store, operation) (default 3); the report gives medians
#   BENCH_SETTLE    seconds to wait after the `sync` before each measurement (default 5)
#   BENCH_RESULTS   report (default bench/RESULTS-cluster.md for mixed-512m,
#                   target/bench-cluster/RESULTS-cluster.md otherwise)
#   REHOST_BIN      rehost binary (default target/release/rehost; built when missing)
#
# Method (that of bench/run.sh, whose settle/measure steps bench/lib.sh shares):
# every measurement runs under /usr/bin/time -v after `sync` and BENCH_SETTLE
# seconds; all backup rounds, then all restore rounds, then all pull rounds;
# odd rounds measure the single node first, even rounds the cluster first.
# A backup writes to a fresh prefix, after the data was read once (warm page
# cache); a restore restores round 1's backup into a fresh directory and a pull
# pulls a copy of the data set (uploaded once per store with `aws s3 sync`, not
# timed) into a fresh directory; both are compared with the source afterwards.
# Both stores store blocks uncompressed (scripts/garage.sh's default).
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PROFILE="${CLUSTER_BENCH_PROFILE:-mixed-512m}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SETTLE="${BENCH_SETTLE:-5}"
WORK="$ROOT/target/bench-cluster"
DATA="$ROOT/target/bench-data-$PROFILE"
OUT="$ROOT/target/bench-cluster-out"
SINGLE_DIR="$ROOT/target/garage-bench-single"
CLUSTER_DIR="$ROOT/target/garage-bench-cluster"
REHOST_BIN="${REHOST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rehost}"
if [ -z "${BENCH_RESULTS:-}" ]; then
    if [ "$PROFILE" = mixed-512m ]; then BENCH_RESULTS="$ROOT/bench/RESULTS-cluster.md"
    else BENCH_RESULTS="$WORK/RESULTS-cluster.md"; fi
fi
BUCKET=bench
STORES=(single cluster)
DROP=""          # bench/lib.sh: the page cache is not dropped here
PENDING_RM=()
FAILED=0

say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench-cluster: error: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

[[ "$BENCH_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$BENCH_ROUNDS'"
[[ "$BENCH_SETTLE" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_SETTLE must be a number of seconds, not '$BENCH_SETTLE'"
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(AWS_|RCLONE_)' || true)

mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.bench-cluster.lock"
flock -n 9 || die "another bench/cluster.sh is running in this checkout"

if [ ! -x "$REHOST_BIN" ]; then
    say "building rehost (cargo build --release -p rehost)"
    cargo build --release -p rehost
    [ -x "$REHOST_BIN" ] || die "$REHOST_BIN missing after the build"
fi
for t in aws /usr/bin/time python3; do
    command -v "$t" >/dev/null 2>&1 || die "missing $t (scripts/install-tools.sh --bench)"
done

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "data ($PROFILE) in $DATA"
python3 bench/gen-data.py --profile "$PROFILE" "$DATA"
read -r DATA_FILES DATA_BYTES < <(python3 -c '
import json,sys; s=json.load(open(sys.argv[1]))["stats"]; print(s["files"], s["bytes"])' "$DATA/.complete")

say "a single Garage node ($SINGLE_DIR) and a 3-node cluster ($CLUSTER_DIR), fresh"
stop_all() {
    scripts/garage.sh stop "$SINGLE_DIR" >/dev/null 2>&1 || true
    scripts/garage-cluster.sh stop "$CLUSTER_DIR" >/dev/null 2>&1 || true
}
stop_all
rm -rf "$SINGLE_DIR" "$CLUSTER_DIR" "$OUT"
# shellcheck disable=SC2329
cleanup() {
    local rc=$?
    stop_all
    rm -rf "$SINGLE_DIR" "$CLUSTER_DIR" "$OUT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
scripts/garage.sh start "$SINGLE_DIR" >/dev/null 9>&-
scripts/garage.sh bucket "$BUCKET" "$SINGLE_DIR" >/dev/null
scripts/garage-cluster.sh start "$CLUSTER_DIR" >/dev/null 9>&-
scripts/garage-cluster.sh bucket "$BUCKET" "$CLUSTER_DIR" >/dev/null
mkdir -p "$WORK" "$OUT"
RUNID="$(date -u +%Y%m%dT%H%M%SZ)-$$"

store_env() {  # $1 store: the env file of its Garage
    case "$1" in single) echo "$SINGLE_DIR/env" ;; cluster) echo "$CLUSTER_DIR/env" ;; esac
}

# conf STORE FILE PREFIX STATE_PATH PULL_DEST STATE_DIR: a rehost configuration for that store
conf() {
    (
        # shellcheck disable=SC1090
        . "$(store_env "$1")"
        cat >"$2" <<EOF
host: bench
state_dir: $6
storage:
  url: s3://$BUCKET/$3
  endpoint: $REHOST_TEST_S3_ENDPOINT
  region: garage
  path_style: true
  credentials_file: $REHOST_TEST_S3_CREDENTIALS_FILE
state:
  data:
    path: $4
pull:
  site:
    source: s3://$BUCKET/pull-src/
    dest: $5
EOF
    )
}

# awscli as bench/run.sh sets it up: path-style, checksums only when required.
cat >"$WORK/aws-config" <<'EOF'
[default]
region = garage
s3 =
    addressing_style = path
request_checksum_calculation = when_required
response_checksum_validation = when_required
EOF
say "the pull source: the data set copied to s3://$BUCKET/pull-src/ of each store (aws s3 sync, not timed)"
for s in "${STORES[@]}"; do
    (
        # shellcheck disable=SC1090
        . "$(store_env "$s")"
        AWS_ACCESS_KEY_ID="$REHOST_TEST_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$REHOST_TEST_S3_SECRET_ACCESS_KEY" \
            AWS_DEFAULT_REGION=garage AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE=/dev/null \
            aws --endpoint-url "$REHOST_TEST_S3_ENDPOINT" s3 sync --only-show-errors --exclude .complete \
            "$DATA/" "s3://$BUCKET/pull-src/"
    ) || die "uploading the pull source to the $s store failed"
done

TSV="$WORK/results-$RUNID.tsv"
printf 'store\top\tround\twall_s\tcpu_s\tmaxrss_kib\texit\tcheck\n' >"$TSV"
record() {  # store op round check
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$M_WALL" "$M_CPU" "$M_RSS" "$M_EXIT" "$4" >>"$TSV"
}

REHOST=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$REHOST_BIN")

run_op() {  # op store round
    local op="$1" s="$2" r="$3" c="$WORK/$2-$1-r$3.yaml" dir="$OUT/$2-$1-r$3" check="-" prefix
    prefix="rehost-$RUNID-r$r"
    [ "$op" = backup ] || prefix="rehost-$RUNID-r1"
    rm -rf "$dir"
    mkdir -p "$dir"
    case "$op" in
        backup)
            conf "$s" "$c" "$prefix" "$DATA" "$dir/www" "$dir/state"
            tar cf - -C "$DATA" . >/dev/null  # the same warm page cache for every backup
            measure "$s" backup "$r" "$WORK/$s-backup-r$r.log" "${REHOST[@]}" -c "$c" backup data
            ;;
        restore)
            conf "$s" "$c" "$prefix" "$dir/data" "$dir/www" "$dir/state"
            measure "$s" restore "$r" "$WORK/$s-restore-r$r.log" "${REHOST[@]}" -c "$c" restore data --force
            if [ "$M_EXIT" = 0 ]; then
                if python3 bench/tree-manifest.py compare "$DATA" "$dir/data" >"$WORK/compare.log" 2>&1; then
                    check=OK
                else check=FAIL; FAILED=1; tail -n 5 "$WORK/compare.log" >&2; fi
            fi
            ;;
        pull)
            conf "$s" "$c" "$prefix" "$dir/data" "$dir/www" "$dir/state"
            measure "$s" pull "$r" "$WORK/$s-pull-r$r.log" "${REHOST[@]}" -c "$c" pull site
            if [ "$M_EXIT" = 0 ]; then
                if diff -r --exclude=.complete --exclude='.rehost-pull-*' "$DATA" "$dir/www" >"$WORK/compare.log" 2>&1; then
                    check=OK
                else check=FAIL; FAILED=1; head -n 5 "$WORK/compare.log" >&2; fi
            fi
            ;;
    esac
    record "$s" "$op" "$r" "$check"
    PENDING_RM+=("$dir")
}

for op in backup restore pull; do
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        if ((round % 2)); then order=(single cluster); else order=(cluster single); fi
        say "$op round $round/$BENCH_ROUNDS: ${order[*]}"
        for s in "${order[@]}"; do
            run_op "$op" "$s" "$round"
        done
    done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

say "report: $BENCH_RESULTS"
mkdir -p "$(dirname "$BENCH_RESULTS")"
REHOST_VERSION="$("$REHOST_BIN" --version 2>/dev/null | head -n 1 || echo '?')"
case "$REHOST_BIN" in */debug/*) REHOST_BUILD="debug build (hashing and (de)compression crates at opt-level 3)" ;; *) REHOST_BUILD="release build" ;; esac
python3 - "$TSV" "$BENCH_RESULTS" <<EOF
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
def med(store, op, col):
    v = [float(r[col]) for r in rows if r[0] == store and r[1] == op and r[6] == "0"]
    return statistics.median(v) if v else float("nan")
out = []
out.append("# Replication cost: 3-node Garage cluster vs single node")
out.append("")
out.append("Generated by \`bench/cluster.sh\` (run $RUNID). Both stores on loopback on the same")
out.append("machine ($(nproc) CPUs, shared and busy: load average $LOAD_START at the start,")
out.append("$LOAD_END at the end), measured in the same run, interleaved (odd rounds single node")
out.append("first, even rounds cluster first); median of $BENCH_ROUNDS rounds, wall seconds and peak")
out.append("RSS from \`/usr/bin/time -v\`, after \`sync\` and ${BENCH_SETTLE} s of settling.")
out.append("")
out.append("- data: $(python3 bench/gen-data.py --profile "$PROFILE" --describe) ($DATA_FILES files, $((DATA_BYTES / 1048576)) MiB)")
out.append("- cluster: 3 Garage processes, 3 zones, \`replication_factor = 3\`, default consistency mode;")
out.append("  rehost talks to node 1's S3 API. Single node: \`replication_factor = 1\`. Blocks uncompressed.")
out.append("- rehost: $REHOST_VERSION, $REHOST_BUILD; garage: $(scripts/garage.sh install 2>/dev/null | head -n 1 | cut -d' ' -f1-2)")
out.append("- backup: a fresh prefix each round (warm page cache); restore: round 1's backup into an")
out.append("  empty directory (its final syncfs included); pull: the data set's objects into an empty")
out.append("  directory. Every restore and pull compared with the source: " + ("all OK" if all(r[7] == "OK" for r in rows if r[1] != "backup") and all(r[6] == "0" for r in rows) else "FAILURES, see the raw rows"))
out.append("")
out.append("| operation | single node s | cluster s | cluster / single | single RSS MiB | cluster RSS MiB |")
out.append("|---|---|---|---|---|---|")
for op in ("backup", "restore", "pull"):
    a, b = med("single", op, 3), med("cluster", op, 3)
    ra, rb = med("single", op, 5) / 1024, med("cluster", op, 5) / 1024
    out.append(f"| {op} | {a:.2f} | {b:.2f} | {b / a:.2f}x | {ra:.0f} | {rb:.0f} |")
out.append("")
out.append("Raw rows (store, op, round, wall s, CPU s, peak RSS KiB, exit, check):")
out.append("")
out.append("\`\`\`")
out.extend("  ".join(r) for r in rows)
out.append("\`\`\`")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
cat "$BENCH_RESULTS"
exit "$FAILED"
