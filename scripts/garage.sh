#!/usr/bin/env bash
# A real single-node Garage (S3-compatible store) on loopback, for tests, the
# demo and the benchmarks.
#
#   scripts/garage.sh install              find or build garage (cargo install, ~7 min), print its version
#   scripts/garage.sh start  [DIR]         start (idempotent), set up key + bucket, write DIR/env
#   scripts/garage.sh bucket NAME [DIR]    create another bucket, allow the test key on it (idempotent)
#   scripts/garage.sh stop   [DIR]         stop the server (idempotent)
#   scripts/garage.sh status [DIR]         exit 0 when running, 3 when not
#
# DIR defaults to $PWD/target/garage. After `start`, `. DIR/env` exports
#   REHOST_TEST_S3_ENDPOINT REHOST_TEST_S3_REGION REHOST_TEST_S3_BUCKET
#   REHOST_TEST_S3_ACCESS_KEY_ID REHOST_TEST_S3_SECRET_ACCESS_KEY
#   REHOST_TEST_S3_CREDENTIALS_FILE REHOST_TEST_GARAGE_DIR
#   REHOST_TEST_GARAGE_ADMIN REHOST_TEST_GARAGE_ADMIN_TOKEN
#
# Binary: $REHOST_GARAGE_BIN, else $REHOST_CACHE/garage/bin/garage (REHOST_CACHE
# defaults to ~/.cache/rehost), else `garage` in PATH.
# Blocks are stored uncompressed (compression_level = "none") so that the
# server does not compete for CPU with the client being measured; set
# REHOST_GARAGE_COMPRESSION=1 (a zstd level) to change that for a fresh DIR.
set -euo pipefail

REHOST_CACHE="${REHOST_CACHE:-$HOME/.cache/rehost}"
KEY_NAME=rehost-test
DEFAULT_BUCKET=rehost-test
REGION=garage
START_TIMEOUT=30
STOP_TIMEOUT=15

# Settings of the caller's environment must not leak into the garage CLI.
unset GARAGE_RPC_HOST GARAGE_RPC_SECRET GARAGE_RPC_SECRET_FILE GARAGE_ADMIN_TOKEN \
      GARAGE_ADMIN_TOKEN_FILE GARAGE_METRICS_TOKEN GARAGE_METRICS_TOKEN_FILE \
      GARAGE_CONFIG_FILE GARAGE_ALLOW_WORLD_READABLE_SECRETS GARAGE_LOG_TO_SYSLOG \
      GARAGE_LOG_TO_JOURNALD 2>/dev/null || true

die() { echo "garage.sh: error: $*" >&2; exit 1; }
log() { echo "garage.sh: $*" >&2; }

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

GARAGE=""
find_garage() {
    if [ -n "${REHOST_GARAGE_BIN:-}" ]; then
        [ -x "$REHOST_GARAGE_BIN" ] || die "REHOST_GARAGE_BIN=$REHOST_GARAGE_BIN is not an executable"
        GARAGE="$REHOST_GARAGE_BIN"
    elif [ -x "$REHOST_CACHE/garage/bin/garage" ]; then
        GARAGE="$REHOST_CACHE/garage/bin/garage"
    elif command -v garage >/dev/null 2>&1; then
        GARAGE="$(command -v garage)"
    else
        return 1
    fi
}

ensure_garage() {
    find_garage && return 0
    command -v cargo >/dev/null 2>&1 || die "garage not found and cargo missing: cannot build it"
    mkdir -p "$REHOST_CACHE/garage"
    # Two callers at once (parallel test setups) would both build for minutes:
    # the second waits for the first and then finds its binary.
    exec 8>"$REHOST_CACHE/garage/.install.lock"
    if ! flock -n 8; then
        log "another garage build is running; waiting for it (up to 60 min)"
        flock -w 3600 8 || die "timed out waiting for another garage build"
    fi
    find_garage && { exec 8>&-; return 0; }
    local ilog="$REHOST_CACHE/garage/install.log"
    log "garage not found: building it with 'cargo install garage --locked --root $REHOST_CACHE/garage' (takes ~7 min; log: $ilog)"
    if ! timeout 3600 cargo install garage --locked --root "$REHOST_CACHE/garage" </dev/null >"$ilog" 2>&1; then
        tail -n 30 "$ilog" >&2
        die "cargo install garage failed (full log: $ilog)"
    fi
    find_garage || die "garage still not found after cargo install"
    exec 8>&-
}

cmd_install() {
    ensure_garage
    echo "$("$GARAGE" --version 2>&1 | head -n 1) ($GARAGE)"
}

# --- helpers on a server directory ------------------------------------------------

resolve_dir() {  # $1: DIR or empty; sets DIR to an absolute path (not created)
    local d="${1:-$PWD/target/garage}"
    case "$d" in /*) ;; *) d="$PWD/$d" ;; esac
    # normalise without requiring existence
    DIR="$(python3 -c 'import os,sys; print(os.path.normpath(sys.argv[1]))' "$d")"
    dir_paths
}

dir_paths() {  # the server files of $DIR (an absolute, normalised path)
    CONF="$DIR/garage.toml"
    PIDFILE="$DIR/garage.pid"
    LOGFILE="$DIR/garage.log"
}

server_pid() {  # prints the pid of the live server of $DIR, or fails
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # make sure it is our garage and not a recycled pid
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF" || return 1
    echo "$pid"
}

g() {  # garage CLI against the server of $DIR, bounded in time
    timeout 20 "$GARAGE" -c "$CONF" "$@" </dev/null
}

gjson() {  # g json-api ENDPOINT [PAYLOAD] | python3 -c EXPR  (EXPR gets `j`)
    local endpoint="$1" payload="$2" expr="$3" out
    if [ -n "$payload" ]; then
        out="$(g json-api "$endpoint" "$payload" 2>&1)" || { echo "$out" >&2; return 1; }
    else
        out="$(g json-api "$endpoint" 2>&1)" || { echo "$out" >&2; return 1; }
    fi
    printf '%s' "$out" | python3 -c "import json,sys; j=json.load(sys.stdin); print($expr)"
}

free_ports() {  # prints 3 distinct free loopback ports
    python3 - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

mask() {  # show only the start of a secret
    local s="$1"
    if [ "${#s}" -le 8 ]; then echo "****"; else echo "${s:0:4}…(${#s} chars)"; fi
}

load_secrets() {  # DIR/secrets: generated once per DIR, reused on every start
    local f="$DIR/secrets"
    if [ ! -s "$f" ]; then
        local old_umask; old_umask="$(umask)"; umask 077
        python3 - "$f.tmp" <<'EOF'
import secrets, sys
with open(sys.argv[1], "w") as f:
    f.write("RPC_SECRET=%s\n" % secrets.token_hex(32))
    f.write("ADMIN_TOKEN=%s\n" % secrets.token_hex(32))
    f.write("METRICS_TOKEN=%s\n" % secrets.token_hex(32))
    f.write("KEY_ID=GK%s\n" % secrets.token_hex(12))
    f.write("SECRET_KEY=%s\n" % secrets.token_hex(32))
EOF
        mv "$f.tmp" "$f"
        umask "$old_umask"
    fi
    chmod 600 "$f"
    RPC_SECRET="$(sed -n 's/^RPC_SECRET=//p' "$f")"
    ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN=//p' "$f")"
    METRICS_TOKEN="$(sed -n 's/^METRICS_TOKEN=//p' "$f")"
    KEY_ID="$(sed -n 's/^KEY_ID=//p' "$f")"
    SECRET_KEY="$(sed -n 's/^SECRET_KEY=//p' "$f")"
    [ -n "$RPC_SECRET" ] && [ -n "$ADMIN_TOKEN" ] && [ -n "$KEY_ID" ] && [ -n "$SECRET_KEY" ] \
        || die "$f is damaged; remove $DIR to start afresh"
}

write_config() {  # $1 s3 port, $2 rpc port, $3 admin port [$4 replication factor, $5 bootstrap peers]
    local compression="${REHOST_GARAGE_COMPRESSION:-none}" replication="${4:-1}" peers="${5:-}"
    [[ "$compression" =~ ^[0-9]+$ ]] || compression="\"$compression\""
    local old_umask; old_umask="$(umask)"; umask 077
    cat >"$CONF.tmp" <<EOF
# Generated by scripts/garage.sh: Garage for rehost tests (loopback only; replication $replication).
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
replication_factor = $replication
compression_level = $compression

rpc_bind_addr = "127.0.0.1:$2"
rpc_public_addr = "127.0.0.1:$2"
rpc_secret = "$RPC_SECRET"
bootstrap_peers = [$peers]

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$1"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$3"
admin_token = "$ADMIN_TOKEN"
metrics_token = "$METRICS_TOKEN"
EOF
    mv "$CONF.tmp" "$CONF"
    umask "$old_umask"
}

read_ports() {  # DIR/ports is written with the config
    [ -s "$DIR/ports" ] || die "$DIR/ports missing; stop and start again"
    # shellcheck disable=SC1091
    . "$DIR/ports"
    [ -n "${S3_PORT:-}" ] && [ -n "${RPC_PORT:-}" ] && [ -n "${ADMIN_PORT:-}" ] || die "$DIR/ports is damaged"
}

tail_log() {
    if [ -f "$LOGFILE" ]; then
        echo "---- last lines of $LOGFILE ----" >&2
        tail -n 25 "$LOGFILE" >&2
        echo "----" >&2
    fi
}

launch() {
    mkdir -p "$DIR/meta" "$DIR/data"
    local ports
    ports="$(free_ports)"
    # shellcheck disable=SC2086
    set -- $ports
    write_config "$1" "$2" "$3"
    printf 'S3_PORT=%s\nRPC_PORT=%s\nADMIN_PORT=%s\n' "$1" "$2" "$3" >"$DIR/ports"
    read_ports
    spawn
}

spawn() {  # starts the server of $CONF in the background (ports from read_ports)
    {
        echo
        echo "=== $(date -u +%FT%TZ) garage.sh start: s3 127.0.0.1:$S3_PORT rpc :$RPC_PORT admin :$ADMIN_PORT"
    } >>"$LOGFILE"
    # setsid: the server outlives this script and is not hit by the caller's Ctrl-C.
    NO_COLOR=1 RUST_LOG="${REHOST_GARAGE_LOG:-garage=info}" nohup setsid "$GARAGE" -c "$CONF" server \
        </dev/null >>"$LOGFILE" 2>&1 9>&- &
    echo $! >"$PIDFILE"
}

wait_ready() {  # returns 1 when the server exited (e.g. a port was taken meanwhile)
    local deadline=$((SECONDS + START_TIMEOUT)) pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    while :; do
        # Alive (and not a zombie) is enough for the pid just spawned: until
        # nohup, setsid and garage have been exec'd its cmdline is this
        # script's, which server_pid would take for "not our server".
        if ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            return 1
        fi
        if timeout 5 "$GARAGE" -c "$CONF" status </dev/null >/dev/null 2>&1; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail_log
            die "garage server did not answer within ${START_TIMEOUT}s (config $CONF)"
        fi
        sleep 0.3
    done
}

wait_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT)) code
    while :; do
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/health" || true)"
        [ "$code" = 200 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            g status >&2 || true
            tail_log
            die "garage cluster not healthy within ${START_TIMEOUT}s (admin /health: $code)"
        fi
        sleep 0.3
    done
}

setup_layout() {
    local node_id has_role version
    node_id="$(gjson GetClusterStatus "" 'j["nodes"][0]["id"]')" || die "cannot read the node id (garage status)"
    has_role="$(gjson GetClusterStatus "" 'any(n.get("role") for n in j["nodes"])')" || die "cannot read the cluster status"
    if [ "$has_role" = True ]; then
        return 0
    fi
    g layout assign -z dc1 -c 1G "$node_id" >/dev/null || die "garage layout assign failed"
    version="$(gjson GetClusterLayout "" 'j["version"]')" || die "cannot read the layout version"
    g layout apply --version "$((version + 1))" >/dev/null || die "garage layout apply failed"
}

setup_key() {
    if g key info "$KEY_ID" >/dev/null 2>&1; then
        return 0
    fi
    g key import --yes -n "$KEY_NAME" "$KEY_ID" "$SECRET_KEY" >/dev/null || die "garage key import failed"
}

ensure_bucket() {  # $1 bucket name
    local b="$1" out
    [[ "$b" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "invalid bucket name: $b"
    if ! g bucket info "$b" >/dev/null 2>&1; then
        if ! out="$(g bucket create "$b" 2>&1)"; then
            # a concurrent creation is fine
            grep -q BucketAlreadyExists <<<"$out" || { echo "$out" >&2; die "garage bucket create $b failed"; }
        fi
    fi
    g bucket allow --read --write --owner "$b" --key "$KEY_ID" >/dev/null || die "garage bucket allow $b failed"
}

write_env() {
    local creds="$DIR/credentials" old_umask
    old_umask="$(umask)"; umask 077
    cat >"$creds.tmp" <<EOF
[default]
aws_access_key_id = $KEY_ID
aws_secret_access_key = $SECRET_KEY
EOF
    chmod 600 "$creds.tmp"
    mv "$creds.tmp" "$creds"
    {
        echo "# Generated by scripts/garage.sh start; source it: . $DIR/env"
        printf 'export REHOST_TEST_S3_ENDPOINT=%q\n' "http://127.0.0.1:$S3_PORT"
        printf 'export REHOST_TEST_S3_REGION=%q\n' "$REGION"
        printf 'export REHOST_TEST_S3_BUCKET=%q\n' "$DEFAULT_BUCKET"
        printf 'export REHOST_TEST_S3_ACCESS_KEY_ID=%q\n' "$KEY_ID"
        printf 'export REHOST_TEST_S3_SECRET_ACCESS_KEY=%q\n' "$SECRET_KEY"
        printf 'export REHOST_TEST_S3_CREDENTIALS_FILE=%q\n' "$creds"
        printf 'export REHOST_TEST_GARAGE_DIR=%q\n' "$DIR"
        printf 'export REHOST_TEST_GARAGE_ADMIN=%q\n' "http://127.0.0.1:$ADMIN_PORT"
        printf 'export REHOST_TEST_GARAGE_ADMIN_TOKEN=%q\n' "$ADMIN_TOKEN"
    } >"$DIR/env.tmp"
    chmod 600 "$DIR/env.tmp"
    mv "$DIR/env.tmp" "$DIR/env"
    umask "$old_umask"
}

print_settings() {
    local pid
    pid="$(server_pid || echo '?')"
    cat <<EOF
Garage running (pid $pid), dir $DIR
  REHOST_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
  REHOST_TEST_S3_REGION=$REGION
  REHOST_TEST_S3_BUCKET=$DEFAULT_BUCKET
  REHOST_TEST_S3_ACCESS_KEY_ID=$KEY_ID
  REHOST_TEST_S3_SECRET_ACCESS_KEY=$(mask "$SECRET_KEY")
  REHOST_TEST_S3_CREDENTIALS_FILE=$DIR/credentials
  REHOST_TEST_GARAGE_ADMIN=http://127.0.0.1:$ADMIN_PORT  (token $(mask "$ADMIN_TOKEN"))
  log: $LOGFILE
  use it: . $DIR/env
EOF
}

# --- subcommands ------------------------------------------------------------------

cmd_start() {
    resolve_dir "${1:-}"
    ensure_garage
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 60 9 || die "another garage.sh is busy with $DIR"
    load_secrets
    if server_pid >/dev/null; then
        read_ports
        if [ -s "$DIR/env" ] && [ -f "$DIR/.setup-done" ]; then
            print_settings
            return 0
        fi
        wait_ready || die "garage server (config $CONF) is not answering"
    else
        rm -f "$PIDFILE" "$DIR/.setup-done"
        local attempt
        for attempt in 1 2 3; do
            launch
            wait_ready && break
            if [ "$attempt" = 3 ]; then
                tail_log
                die "garage server (config $CONF) exited during startup (3 attempts)"
            fi
            log "garage server exited during startup (attempt $attempt); retrying with other ports"
        done
    fi
    setup_layout
    wait_healthy
    setup_key
    ensure_bucket "$DEFAULT_BUCKET"
    write_env
    touch "$DIR/.setup-done"
    print_settings
}

cmd_bucket() {
    [ $# -ge 1 ] || die "usage: garage.sh bucket NAME [DIR]"
    local name="$1"
    resolve_dir "${2:-}"
    find_garage || die "garage is not installed (scripts/garage.sh install)"
    server_pid >/dev/null || die "no garage server running from $DIR (scripts/garage.sh start $DIR)"
    load_secrets
    ensure_bucket "$name"
    echo "bucket $name ready (key $KEY_ID: read, write, owner)"
}

cmd_stop() {
    resolve_dir "${1:-}"
    local pid deadline
    if ! pid="$(server_pid)"; then
        rm -f "$PIDFILE" "$DIR/.setup-done"
        echo "garage: not running ($DIR)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "garage (pid $pid) still alive after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && die "garage (pid $pid) survived SIGKILL"
    fi
    rm -f "$PIDFILE" "$DIR/.setup-done"
    echo "garage: stopped (pid $pid, $DIR)"
}

cmd_status() {
    resolve_dir "${1:-}"
    local pid
    if pid="$(server_pid)"; then
        read_ports
        echo "garage: running (pid $pid, $DIR)"
        echo "  s3 http://127.0.0.1:$S3_PORT  admin http://127.0.0.1:$ADMIN_PORT  rpc 127.0.0.1:$RPC_PORT"
        if find_garage; then
            g status 2>&1 | sed 's/^/  /' || true
        fi
        return 0
    fi
    echo "garage: not running ($DIR)"
    return 3
}

main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        install) [ $# -eq 0 ] || die "usage: garage.sh install"; cmd_install ;;
        start) [ $# -le 1 ] || die "usage: garage.sh start [DIR]"; cmd_start "$@" ;;
        bucket) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: garage.sh bucket NAME [DIR]"; cmd_bucket "$@" ;;
        stop) [ $# -le 1 ] || die "usage: garage.sh stop [DIR]"; cmd_stop "$@" ;;
        status) [ $# -le 1 ] || die "usage: garage.sh status [DIR]"; cmd_status "$@" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

# Sourced (scripts/garage-cluster.sh reuses the functions above): no subcommand.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
