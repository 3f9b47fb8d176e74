#!/usr/bin/env bash
# A real 3-node Garage cluster on loopback (three processes, three zones,
# replication_factor = 3, Garage's default consistency mode), for the tests
# that lose a node (tests/e2e/cluster.rs) and bench/cluster.sh.
#
#   scripts/garage-cluster.sh start [DIR]         start the 3 nodes (idempotent), layout, key + bucket, write DIR/env
#   scripts/garage-cluster.sh kill N [DIR]        SIGKILL node N (1-3); idempotent
#   scripts/garage-cluster.sh start-node N [DIR]  start node N again (same data, same ports); returns once
#                                                 the running nodes see it connected
#   scripts/garage-cluster.sh bucket NAME [DIR]   create another bucket, allow the test key on it
#   scripts/garage-cluster.sh stop [DIR]          stop every node (idempotent)
#   scripts/garage-cluster.sh status [DIR]        exit 0 when all 3 nodes run, 3 when not
#
# DIR defaults to $PWD/target/garage-cluster; node N lives in DIR/nodeN (its own
# metadata and data directories, config, log and ports). After `start`,
# `. DIR/env` exports the same REHOST_TEST_* variables as scripts/garage.sh;
# REHOST_TEST_S3_ENDPOINT (and the admin API) are those of node 1, so kill
# nodes 2 and 3 to test a degraded cluster behind a live endpoint.
# The binary and REHOST_GARAGE_COMPRESSION are found/read as by scripts/garage.sh,
# whose functions this script reuses.
set -euo pipefail

# shellcheck source=scripts/garage.sh
. "$(dirname "${BASH_SOURCE[0]}")/garage.sh"

NODES=3
HEALTH_TIMEOUT=60

die() { echo "garage-cluster.sh: error: $*" >&2; exit 1; }
log() { echo "garage-cluster.sh: $*" >&2; }

resolve_cluster() {  # $1: DIR or empty; sets CDIR
    resolve_dir "${1:-$PWD/target/garage-cluster}"
    CDIR="$DIR"
}

node() {  # $1: 1..3; points DIR, CONF, PIDFILE, LOGFILE (garage.sh's) at node $1
    [[ "$1" =~ ^[1-3]$ ]] || die "no node '$1' (nodes are 1, 2 and 3)"
    DIR="$CDIR/node$1"
    dir_paths
}

node_ports() {  # node $1's ports (chosen once, kept across restarts: the peers know them)
    local n="$1"
    node "$n"
    if [ ! -s "$DIR/ports" ]; then
        local ports taken
        taken="$( (cat "$CDIR"/node*/ports 2>/dev/null || true) | sed -n 's/^[A-Z0-9_]*=//p' | tr '\n' ' ')"
        local tries
        for tries in 1 2 3 4 5; do
            ports="$(free_ports)"
            # shellcheck disable=SC2086
            set -- $ports
            [[ " $taken " == *" $1 "* || " $taken " == *" $2 "* || " $taken " == *" $3 "* ]] || break
            [ "$tries" = 5 ] && die "could not find 3 free ports for node $n that the other nodes do not use"
        done
        mkdir -p "$DIR"
        printf 'S3_PORT=%s\nRPC_PORT=%s\nADMIN_PORT=%s\n' "$1" "$2" "$3" >"$DIR/ports.tmp"
        mv "$DIR/ports.tmp" "$DIR/ports"
    fi
    read_ports
}

launch_node() {  # $1: node; (re)writes its config and starts it; waits for its RPC to answer
    local n="$1" attempt
    for attempt in 1 2 3; do
        node_ports "$n"
        mkdir -p "$DIR/meta" "$DIR/data"
        # No bootstrap_peers: a restarted node reconnects from the peer list in
        # its metadata directory; with the same peers in both it dials each twice
        # at once, and Garage 2.5 then kept it marked as down on the other side.
        write_config "$S3_PORT" "$RPC_PORT" "$ADMIN_PORT" "$NODES"
        rm -f "$PIDFILE"
        spawn
        wait_ready && return 0
        tail_log
        # A port taken since it was chosen: a node the others do not know yet
        # may take new ones; a known node must keep its RPC address.
        [ -s "$DIR/node-id" ] && die "node $n (config $CONF) exited during startup"
        [ "$attempt" = 3 ] && die "node $n (config $CONF) exited during startup (3 attempts)"
        log "node $n exited during startup (attempt $attempt); retrying with other ports"
        rm -f "$DIR/ports"
    done
}

record_node_id() {  # $1: node (running): DIR/nodeN/node-id = "<hex id>@127.0.0.1:<rpc port>"
    node "$1"
    local id
    id="$(g node id -q 2>/dev/null | tail -n 1)" || die "cannot read node $1's id (garage node id)"
    [[ "$id" =~ ^[0-9a-f]{64}@127\.0\.0\.1:[0-9]+$ ]] || die "unexpected id of node $1: $id"
    echo "$id" >"$DIR/node-id"
}

live_nodes() {  # the numbers of the nodes whose server runs
    local n
    for n in $(seq 1 "$NODES"); do
        node "$n"
        server_pid >/dev/null && echo "$n"
    done
    true
}

# view M: node M's view of the cluster, "<connected nodes> <status>" (read
# with sed: this runs several times a second, python would be a load of its own)
view() {
    node "$1"
    g json-api GetClusterHealth 2>/dev/null | tr -d ' \n' \
        | sed -n 's/.*"connectedNodes":\([0-9]*\),.*"status":"\([a-z]*\)".*/\1 \2/p' || true
}

# wait_connected N [any]: until every live node sees every live node
# connected and, with all of them up, the cluster healthy (not before the
# layout is applied: `any`). A node that still does not see node N after 5 s
# is told to connect to it: Garage may keep a peer that reconnected at the
# same time from two sides marked as down on one side.
wait_connected() {
    local n="$1" any="${2:-}" want m v ok told="" deadline=$((SECONDS + HEALTH_TIMEOUT)) nudge=$((SECONDS + 5))
    local live
    live="$(live_nodes)"
    want="$(wc -w <<<"$live")"
    while :; do
        ok=1
        for m in $live; do
            v="$(view "$m")"
            case "$v" in
                "$want healthy") ;;
                "$want "*) [ -n "$any" ] || [ "$want" -lt "$NODES" ] || ok="" ;;
                *)
                    ok=""
                    if [ "$SECONDS" -ge "$nudge" ] && [ "$m" != "$n" ] && [[ " $told " != *" $m "* ]]; then
                        log "node $m sees ${v:-no answer} (want $want connected): connecting it to node $n"
                        node "$m"
                        g node connect "$(cat "$CDIR/node$n/node-id")" >/dev/null 2>&1 || true
                        told="$told $m"
                    fi
                    ;;
            esac
        done
        [ -n "$ok" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            node "$n"
            g status >&2 || true
            die "the nodes do not see the $want running nodes connected within ${HEALTH_TIMEOUT}s (node $n: $(view "$n"))"
        fi
        sleep 0.3
    done
}

setup_cluster_layout() {  # from node 1: every node in its own zone, 1 GB each
    node 1
    local has_role version n id
    has_role="$(gjson GetClusterStatus "" 'sum(1 for n in j["nodes"] if n.get("role"))')" \
        || die "cannot read the cluster status"
    [ "$has_role" = "$NODES" ] && return 0
    for n in $(seq 1 "$NODES"); do
        id="$(cut -d@ -f1 "$CDIR/node$n/node-id")"
        g layout assign -z "dc$n" -c 1G "$id" >/dev/null || die "garage layout assign (node $n) failed"
    done
    version="$(gjson GetClusterLayout "" 'j["version"]')" || die "cannot read the layout version"
    g layout apply --version "$((version + 1))" >/dev/null || die "garage layout apply failed"
}

# --- subcommands ------------------------------------------------------------------

cluster_start() {
    resolve_cluster "${1:-}"
    ensure_garage
    mkdir -p "$CDIR"
    exec 9>"$CDIR/.lock"
    flock -w 60 9 || die "another garage-cluster.sh is busy with $CDIR"
    DIR="$CDIR" load_secrets  # one RPC secret, admin token and key for all nodes
    local n all_up=1
    for n in $(seq 1 "$NODES"); do
        node "$n"
        server_pid >/dev/null || all_up=""
    done
    if [ -n "$all_up" ] && [ -s "$CDIR/env" ] && [ -f "$CDIR/.setup-done" ]; then
        cluster_status "$CDIR" || true
        return 0
    fi
    rm -f "$CDIR/.setup-done"
    for n in $(seq 1 "$NODES"); do
        node "$n"
        server_pid >/dev/null || launch_node "$n"
        record_node_id "$n"
    done
    # Connect node 1 to the others: the peers then learn of each other, and
    # keep the list in their metadata directories for later restarts.
    node 1
    for n in $(seq 2 "$NODES"); do
        g node connect "$(cat "$CDIR/node$n/node-id")" >/dev/null || die "node 1 cannot connect to node $n"
    done
    wait_connected 1 any
    setup_cluster_layout
    wait_connected 1
    node 1
    setup_key
    ensure_bucket "$DEFAULT_BUCKET"
    node_ports 1
    local node1_dir="$DIR"
    DIR="$CDIR" write_env
    DIR="$node1_dir"
    touch "$CDIR/.setup-done"
    cluster_status "$CDIR" || true
    echo "  use it: . $CDIR/env  (endpoint: node 1)"
}

cluster_kill() {  # $1 node, [$2 DIR]
    resolve_cluster "${2:-}"
    node "$1"
    local pid deadline
    if ! pid="$(server_pid)"; then
        echo "garage node $1: not running ($DIR)"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && die "node $1 (pid $pid) survived SIGKILL"
    rm -f "$PIDFILE"
    echo "garage node $1: killed (SIGKILL, pid $pid)"
}

cluster_start_node() {  # $1 node, [$2 DIR]
    resolve_cluster "${2:-}"
    [ -f "$CDIR/.setup-done" ] || die "no cluster set up in $CDIR (scripts/garage-cluster.sh start $CDIR)"
    ensure_garage
    exec 9>"$CDIR/.lock"
    flock -w 60 9 || die "another garage-cluster.sh is busy with $CDIR"
    DIR="$CDIR" load_secrets
    node "$1"
    if server_pid >/dev/null; then
        echo "garage node $1: already running"
    else
        launch_node "$1"
        # The restarted node dials the others, but a node only sends its RPCs
        # over a connection it dialled itself, and Garage redials a peer it
        # lost only every 30 s: without this, a node sees the restarted one
        # as down for up to 30 s (and the cluster may lack a quorum meanwhile).
        local m id
        id="$(cat "$CDIR/node$1/node-id")"
        for m in $(live_nodes); do
            [ "$m" = "$1" ] && continue
            node "$m"
            g node connect "$id" >/dev/null 2>&1 || log "node $m could not connect to node $1 yet"
        done
    fi
    wait_connected "$1"
    node "$1"
    echo "garage node $1: running (pid $(server_pid)); $(live_nodes | wc -l) nodes up, all connected"
}

cluster_bucket() {  # NAME [DIR]
    local name="$1"
    resolve_cluster "${2:-}"
    find_garage || die "garage is not installed (scripts/garage.sh install)"
    node 1
    server_pid >/dev/null || die "node 1 of $CDIR is not running"
    DIR="$CDIR" load_secrets
    node 1
    ensure_bucket "$name"
    echo "bucket $name ready (key $KEY_ID: read, write, owner)"
}

cluster_stop() {
    resolve_cluster "${1:-}"
    local n cdir="$CDIR"
    for n in $(seq 1 "$NODES"); do
        echo -n "node $n: "
        cmd_stop "$cdir/node$n"
    done
    rm -f "$cdir/.setup-done"
}

cluster_status() {
    resolve_cluster "${1:-}"
    local n pid up=0 any=""
    for n in $(seq 1 "$NODES"); do
        node "$n"
        if pid="$(server_pid)"; then
            read_ports
            up=$((up + 1))
            any="${any:-$n}"
            echo "garage node $n: running (pid $pid)  s3 http://127.0.0.1:$S3_PORT  admin http://127.0.0.1:$ADMIN_PORT  rpc 127.0.0.1:$RPC_PORT"
        else
            echo "garage node $n: not running ($DIR)"
        fi
    done
    if [ -n "$any" ] && find_garage; then
        node "$any"
        echo "  health (seen by node $any): $(gjson GetClusterHealth "" 'j["status"] + ", " + str(j["connectedNodes"]) + "/" + str(j["knownNodes"]) + " nodes connected"' 2>/dev/null || echo '?')"
    fi
    [ "$up" = "$NODES" ] || return 3
}

cluster_main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        start) [ $# -le 1 ] || die "usage: garage-cluster.sh start [DIR]"; cluster_start "$@" ;;
        kill) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: garage-cluster.sh kill N [DIR]"; cluster_kill "$@" ;;
        start-node) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: garage-cluster.sh start-node N [DIR]"; cluster_start_node "$@" ;;
        bucket) [ $# -ge 1 ] && [ $# -le 2 ] || die "usage: garage-cluster.sh bucket NAME [DIR]"; cluster_bucket "$@" ;;
        stop) [ $# -le 1 ] || die "usage: garage-cluster.sh stop [DIR]"; cluster_stop "$@" ;;
        status) [ $# -le 1 ] || die "usage: garage-cluster.sh status [DIR]"; cluster_status "$@" ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

cluster_main "$@"
