#!/usr/bin/env bash
# Content-pull benchmark: `rehost pull` against `rclone sync --transfers 16`
# and `s3cmd sync --delete-removed`, all from the same single-node Garage on
# loopback (bucket `content`). Writes bench/RESULTS-pull.md.
#
#   bench/pull.sh                 full run: (a) 2,000 files / ~64 MiB, (b) 20,000 small files
#   PULL_SMALL=1 bench/pull.sh    200 + 500 files (checks the harness; report under target/)
#
# For every data set and tool: a full pull into an empty directory, a no-op
# pull, and a pull after 1 % of the objects changed. Each is measured
# BENCH_ROUNDS times (default 3) under /usr/bin/time -v; the report gives the
# median wall seconds and the median peak RSS. Every result tree is compared
# with the source data. Environment: BENCH_ROUNDS, REHOST_BIN (default
# target/release/rehost, built when missing or older than the sources),
# BENCH_KEEP=1 keeps Garage running afterwards.
# The measured `bash -c '...'` commands get their arguments as "$@":
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
ROUNDS="${BENCH_ROUNDS:-3}"
SMALL="${PULL_SMALL:-0}"
GARAGE_DIR="$ROOT/target/garage-pullbench"
WORK="$ROOT/target/pullbench"
if [ "$SMALL" = 1 ]; then
    RESULTS="${BENCH_RESULTS:-$WORK/RESULTS-pull.md}"
    SETS=("a:200:32768" "b:500:2048")
else
    RESULTS="${BENCH_RESULTS:-$ROOT/bench/RESULTS-pull.md}"
    SETS=("a:2000:33554" "b:20000:2048")   # name:files:mean size (a: ~64 MiB)
fi
REHOST_BIN="${REHOST_BIN:-$ROOT/target/release/rehost}"

log() { echo "pull-bench: $*" >&2; }
scripts/install-tools.sh --bench
for t in rclone s3cmd /usr/bin/time python3; do
    command -v "$t" >/dev/null 2>&1 || { log "missing $t (scripts/install-tools.sh --bench)"; exit 1; }
done
if [ ! -x "$REHOST_BIN" ] || [ -n "$(find agent/src jobs/src -newer "$REHOST_BIN" -name '*.rs' -print -quit)" ]; then
    log "building target/release/rehost"
    cargo build --release -p rehost
fi

scripts/garage.sh start "$GARAGE_DIR" >/dev/null
# shellcheck disable=SC1091
. "$GARAGE_DIR/env"
scripts/garage.sh bucket content "$GARAGE_DIR" >/dev/null
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'scripts/garage.sh stop "$GARAGE_DIR" >/dev/null 2>&1 || true' EXIT
for v in $(env | grep -o '^AWS_[A-Z_]*' || true); do unset "$v"; done

rm -rf "$WORK"; mkdir -p "$WORK"
HOSTPORT="${REHOST_TEST_S3_ENDPOINT#http://}"
cat >"$WORK/s3cmd.cfg" <<CFG
[default]
access_key = $REHOST_TEST_S3_ACCESS_KEY_ID
secret_key = $REHOST_TEST_S3_SECRET_ACCESS_KEY
host_base = $HOSTPORT
host_bucket = $HOSTPORT
use_https = False
signature_v2 = False
bucket_location = garage
CFG
cat >"$WORK/rclone.conf" <<CFG
[garage]
type = s3
provider = Other
endpoint = $REHOST_TEST_S3_ENDPOINT
access_key_id = $REHOST_TEST_S3_ACCESS_KEY_ID
secret_access_key = $REHOST_TEST_S3_SECRET_ACCESS_KEY
region = garage
force_path_style = true
CFG
S3CMD=(s3cmd -c "$WORK/s3cmd.cfg" --no-progress -q)

# gen DIR FILES MEAN_SIZE SEED: deterministic tree; with CHANGE=1 rewrites 1 %.
gen() {
    python3 - "$@" <<'PY'
import os, random, sys
root, n, mean, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
change = os.environ.get("CHANGE") == "1"
rng = random.Random(1)
for i in range(n):
    size = max(1, int(rng.expovariate(1.0 / mean)))
    rel = f"d{i % 50:02}/s{i % 7}/f{i}.bin"
    if change and i % 100 != seed % 100:
        continue
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(random.Random(i * 1000 + seed).randbytes(size))
PY
}

measure() { # OUT_FILE CMD...: appends "wall rss_kib"
    local out="$1"; shift
    sync
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + t[k]; w = s }
                /Maximum resident set size/ { r = $2 } END { print w, r }' "$WORK/time.txt" >>"$out"
}

same_tree() { diff -r --exclude='.rehost-pull-*' "$1" "$2" >/dev/null || { log "tree $2 differs from $1"; exit 1; }; }

run_tool() { # TOOL SET DEST
    local tool="$1" set="$2" dest="$3"
    case "$tool" in
        rehost) "$REHOST_BIN" -q -c "$WORK/rehost-$set.yaml" pull ;;
        rclone) rclone --config "$WORK/rclone.conf" sync --transfers 16 "garage:content/$set/" "$dest/" ;;
        s3cmd) s3cmd -c "$WORK/s3cmd.cfg" --no-progress -q sync --delete-removed "s3://content/$set/" "$dest/" ;;
    esac
}
export -f run_tool
export WORK REHOST_BIN

TOOLS=(rehost rclone s3cmd)
k=0
for spec in "${SETS[@]}"; do
    IFS=: read -r set files mean <<<"$spec"
    src="$WORK/src-$set"
    log "data set $set: $files files"
    gen "$src" "$files" "$mean" 0
    "${S3CMD[@]}" sync --delete-removed "$src/" "s3://content/$set/"
    for r in $(seq 1 "$ROUNDS"); do
        for tool in "${TOOLS[@]}"; do
            dest="$WORK/dest-$set-$tool/www"
            rm -rf "$WORK/dest-$set-$tool"; mkdir -p "$dest"
            cat >"$WORK/rehost-$set.yaml" <<CFG
host: bench
storage:
  url: s3://content/unused
  endpoint: $REHOST_TEST_S3_ENDPOINT
  region: garage
  path_style: true
  credentials_file: $REHOST_TEST_S3_CREDENTIALS_FILE
pull:
  $set:
    source: s3://content/$set/
    dest: $dest
    delete_removed: true
    concurrency: 16
CFG
            measure "$WORK/$set-$tool-full" bash -c 'run_tool "$@"' _ "$tool" "$set" "$dest"
            same_tree "$src" "$dest"
            measure "$WORK/$set-$tool-noop" bash -c 'run_tool "$@"' _ "$tool" "$set" "$dest"
            # 1 % changed: a different 1 % for every measurement.
            k=$((k + 1))
            CHANGE=1 gen "$WORK/changed-$set" "$files" "$mean" "$k"
            cp -a "$WORK/changed-$set/." "$src/"
            "${S3CMD[@]}" sync "$src/" "s3://content/$set/"
            measure "$WORK/$set-$tool-changed" bash -c 'run_tool "$@"' _ "$tool" "$set" "$dest"
            same_tree "$src" "$dest"
            rm -rf "$WORK/changed-$set"
        done
    done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
{
    echo "# Content pull benchmark"
    echo
    echo "Garage single node on loopback, $(nproc) CPUs; median of $ROUNDS rounds;"
    echo "wall seconds and peak RSS from \`/usr/bin/time -v\`. Generated by bench/pull.sh."
    echo
    echo "| set | operation | rehost s | rclone s | s3cmd s | rehost/rclone | s3cmd/rehost | rehost RSS MiB | rclone RSS MiB | s3cmd RSS MiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for spec in "${SETS[@]}"; do
        IFS=: read -r set files _ <<<"$spec"
        for op in full noop changed; do
            declare -A w=() m=()
            for tool in "${TOOLS[@]}"; do
                w[$tool]=$(cut -d' ' -f1 "$WORK/$set-$tool-$op" | median)
                m[$tool]=$(cut -d' ' -f2 "$WORK/$set-$tool-$op" | median)
            done
            awk -v s="$set ($files files)" -v o="$op" -v a="${w[rehost]}" -v b="${w[rclone]}" -v c="${w[s3cmd]}" \
                -v ra="${m[rehost]}" -v rb="${m[rclone]}" -v rc="${m[s3cmd]}" 'BEGIN {
                printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.0f | %.0f | %.0f |\n",
                    s, o, a, b, c, (b > 0 ? a / b : 0), (a > 0 ? c / a : 0), ra / 1024, rb / 1024, rc / 1024 }'
        done
    done
    echo
    echo "Targets: full ≤ 1.0× rclone; no-op and 1 % changed ≤ 0.5× rclone and ≥ 10× faster than s3cmd."
} >"$RESULTS"
log "wrote $RESULTS"
cat "$RESULTS"
