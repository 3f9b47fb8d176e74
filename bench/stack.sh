#!/usr/bin/env bash
# Stack benchmark: `rehost up` against `docker-compose up -d` on the test stack
# of tests/fixtures/stack (web built from its context with a healthcheck,
# Prometheus waiting for it to be healthy, a node exporter waiting for
# Prometheus), on the real Docker Engine of this machine. Writes
# bench/RESULTS-stack.md (or $BENCH_RESULTS).
#
#   bench/stack.sh                   5 interleaved rounds
#   BENCH_ROUNDS=3 bench/stack.sh
#
# Environment:
#   BENCH_ROUNDS    rounds (default 5); the report gives medians
#   BENCH_RESULTS   report file (default bench/RESULTS-stack.md)
#   REHOST_BIN      rehost binary (default target/release/rehost; built when missing)
#
# Method. Each tool has its own copy of the stack and its own project name
# and ports, so the two never share a container, network or image. A round:
#   cold: the tool's project is taken down, its built image removed, and a
#         file unique to the tool and round written into web's context, so
#         `up` builds web (FROM is cached; COPY and RUN run), creates the
#         network and the three containers and waits for the healthchecks its
#         depends_on conditions ask for;
#   warm: `up` again with nothing changed.
# Round r measures cold rehost/compose and then warm rehost/compose, the tool
# order alternating between rounds. Wall time from start to exit. The test
# images come from scripts/test-images.sh (no registry).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
BENCH_ROUNDS="${BENCH_ROUNDS:-5}"
BENCH_RESULTS="${BENCH_RESULTS:-$ROOT/bench/RESULTS-stack.md}"
REHOST_BIN="${REHOST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rehost}"
WORK="$ROOT/target/bench-stack"
RUNID="$(date -u +%Y%m%dT%H%M%SZ)-$$"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench-stack: error: $*" >&2; exit 1; }

[[ "$BENCH_ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$BENCH_ROUNDS'"
command -v docker-compose >/dev/null 2>&1 || die "docker-compose not found (apt-get install docker-compose)"
docker info >/dev/null 2>&1 || die "Docker Engine not reachable"

if [ ! -x "$REHOST_BIN" ]; then
    say "building rehost (cargo build --release -p rehost)"
    cargo build --release -p rehost
    [ -x "$REHOST_BIN" ] || die "$REHOST_BIN missing after the build"
fi

say "test images"
scripts/test-images.sh >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The stack's variables come from each tool's env file only.
unset GREETING SITE WEB_PORT PROM_PORT EXPORTER_ROLE
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^AWS_' || true)

rm -rf "$WORK"
mkdir -p "$WORK"
for tool in rehost compose; do
    mkdir -p "$WORK/$tool"
    cp -r tests/fixtures/stack "$WORK/$tool/stack"
    printf 'WEB_PORT=%s\nPROM_PORT=%s\n' "$(free_port)" "$(free_port)" >"$WORK/$tool/stack.env"
done
mkdir -p "$WORK/rehost/store"
cat >"$WORK/rehost/rehost.yaml" <<EOF
host: bench
storage:
  url: file://$WORK/rehost/store
stack:
  compose: $WORK/rehost/stack/docker-compose.yml
  project: bench-rehost
  env_file: $WORK/rehost/stack.env
EOF

RH=("$REHOST_BIN" -q -c "$WORK/rehost/rehost.yaml")
DC=(docker-compose --ansi never -p bench-compose -f "$WORK/compose/stack/docker-compose.yml" --env-file "$WORK/compose/stack.env")

# down_TOOL: remove the project, its networks and its built images.
down_rehost() {
    "${RH[@]}" down >/dev/null
    local imgs
    imgs="$(docker image ls -q --filter "reference=bench-rehost-*" | sort -u)"
    [ -z "$imgs" ] || docker image rm -f $imgs >/dev/null
}
down_compose() {
    "${DC[@]}" down --rmi local >/dev/null 2>&1
}
up_rehost() { "${RH[@]}" up; }
up_compose() { "${DC[@]}" up -d; }

cleanup() {
    local rc=$?
    down_rehost >/dev/null 2>&1 || true
    down_compose >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TSV="$WORK/results-$RUNID.tsv"
printf 'tool\top\tround\twall_s\texit\n' >"$TSV"
FAILED=0

# measure TOOL OP ROUND: time up_TOOL once
measure() {
    local tool="$1" op="$2" round="$3" log="$WORK/$1-$2-r$3.log" t0 t1 rc wall
    t0="$(date +%s%N)"
    set +e
    "up_$tool" >"$log" 2>&1
    rc=$?
    set -e
    t1="$(date +%s%N)"
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    if [ "$rc" != 0 ]; then
        FAILED=1
        echo "bench-stack: round $round: $tool $op FAILED (exit $rc):" >&2
        tail -n 20 "$log" >&2
    else
        echo "bench-stack: round $round: $tool $op: ${wall}s" >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$round" "$wall" "$rc" >>"$TSV"
}

# check TOOL PROJECT: the three containers run and web answers
check() {
    local n port
    n="$(docker ps -q --filter "label=com.docker.compose.project=$2" | wc -l)"
    [ "$n" = 3 ] || { echo "bench-stack: $1: $n containers running, not 3" >&2; FAILED=1; }
    port="$(sed -n 's/^WEB_PORT=//p' "$WORK/$1/stack.env")"
    curl -fsS "http://127.0.0.1:$port/greeting.txt" >/dev/null \
        || { echo "bench-stack: $1: web does not answer on $port" >&2; FAILED=1; }
}

down_rehost >/dev/null 2>&1 || true
down_compose >/dev/null 2>&1 || true
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    if ((round % 2)); then order=(rehost compose); else order=(compose rehost); fi
    say "round $round/$BENCH_ROUNDS: ${order[*]}"
    for t in "${order[@]}"; do
        "down_$t"
        # A file unique to this tool and round: the builder's layer cache
        # (shared by both tools on one Engine) cannot skip the COPY and RUN
        # steps, so every cold up really builds.
        echo "$t $round $RUNID" >"$WORK/$t/stack/web/www/bench-round.txt"
        sync
        measure "$t" cold "$round"
        check "$t" "bench-$t"
    done
    for t in "${order[@]}"; do
        measure "$t" warm "$round"
        check "$t" "bench-$t"
    done
done

versions="rehost: $("$REHOST_BIN" --version | head -n 1) ($REHOST_BIN); docker-compose: $(docker-compose version --short 2>/dev/null); Docker Engine: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
python3 - "$TSV" "$BENCH_RESULTS" "$BENCH_ROUNDS" "$versions" "$RUNID" <<'EOF'
import csv, statistics, sys
tsv, out, rounds, versions, runid = sys.argv[1:6]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
def med(tool, op):
    v = [float(r["wall_s"]) for r in rows if r["tool"] == tool and r["op"] == op and r["exit"] == "0"]
    return (statistics.median(v), v) if v else (None, v)
lines = [
    "# Stack benchmark: `rehost up` vs `docker-compose up -d`",
    "",
    f"Run {runid}, {rounds} interleaved rounds, medians (all runs in parentheses), wall seconds.",
    f"{versions}. Machine: {open('/proc/cpuinfo').read().count('processor')} cores.",
    "",
    "Stack: `tests/fixtures/stack` (web built from its context, healthcheck every 1 s;",
    "Prometheus waits for web to be healthy; node exporter waits for Prometheus to be healthy).",
    "Cold: project down and its built image removed, so `up` builds, creates and waits.",
    "Warm: `up` again with nothing changed. Method: see `bench/stack.sh`.",
    "",
    "| | cold up (build included) | warm up (nothing changed) |",
    "|---|---:|---:|",
]
res = {}
for tool, label in [("rehost", "rehost up"), ("compose", "docker-compose up -d")]:
    cells = []
    for op in ["cold", "warm"]:
        m, v = med(tool, op)
        res[(tool, op)] = m
        cells.append("failed" if m is None else f"{m:.2f} s ({', '.join(f'{x:.2f}' for x in v)})")
    lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
lines.append("")
rw, cw = res[("rehost", "warm")], res[("compose", "warm")]
rc, cc = res[("rehost", "cold")], res[("compose", "cold")]
if None not in (rw, cw, rc, cc):
    lines.append(f"Targets: warm up <= 1 s: {'met' if rw <= 1 else 'NOT met'} ({rw:.2f} s); "
                 f"warm faster than docker-compose: {'met' if rw < cw else 'NOT met'} ({cw / rw:.1f}x); "
                 f"cold no slower than docker-compose: {'met' if rc <= cc else 'NOT met'} ({rc:.2f} s vs {cc:.2f} s).")
open(out, "w").write("\n".join(lines) + "\n")
EOF
say "report: $BENCH_RESULTS"
cat "$BENCH_RESULTS"
exit "$FAILED"
