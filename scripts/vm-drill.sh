#!/usr/bin/env bash
# The disaster-recovery drill on real VMs (issue 15): QEMU guests booted from
# a Debian image (scripts/vm-image.sh) with the PRODUCTION user-data
# (cloud-init/user-data.tmpl rendered by cloud-init/render.sh --gzip, with
# the test values below and the stack variant tests/fixtures/vm-stack, whose
# services are built from the test images: the guest reaches no registry).
#
#   scripts/vm-drill.sh [REHOST_BINARY]     default target/debug/rehost
#
# Garage: the one of REHOST_TEST_S3_* (make test), else one started in
# target/garage-vm and stopped at the end (make vm-drill).
# REHOST_VM_RESULTS=FILE also writes the measured times as Markdown there
# (make vm-drill: bench/RESULTS-vm.md).
#
#   1. VM1 on a registered host (`rehost init`, run here), empty bucket:
#      provisioning, rehost-boot restores nothing and starts the stack,
#      rehost.service runs as `rehost`; the site answers through a forwarded
#      port; scheduled backups and metrics appear
#   2. VM1's state changes (a new acme.json, Prometheus samples); the daemon
#      backs acme.json up, `rehost backup prometheus` the TSDB
#   3. VM2 boots from the same user-data while VM1 runs: restores VM1's
#      state, serves the site; VM1 is taken over (check_vm1_taken_over)
#   4. VM1 is killed (power off); VM2's state changes and is backed up; VM2
#      is killed
#   5. VM3 boots: acme.json is VM2's last backup byte for byte, 0600;
#      Prometheus answers VM2's (and VM1's) samples; the site is served; the
#      jobs run as `rehost`; fresh metrics
#   floor  last, alone: a VM with the same image and a user-data that only
#      echoes a line: what no user-data can beat (kernel, systemd, cloud-init)
#
# Per boot it prints the time to recover (QEMU start -> the site answers
# through the forwarded port with the restored state in place) and rehost's
# share of it (restore + up, from rehost-boot.prom), beside the floor.
#
# KVM when it works (probed), else TCG; REHOST_VM_ACCEL=kvm|tcg forces one.
# At most 2 VMs at once, -smp 2 -m 1024, every wait bounded. On a failed
# step: the guest's serial console (last 200 lines) and `journalctl -u
# rehost-boot -u rehost` from the guest (over SSH, the image's drill key).
#
# Exit: 0 passed, 1 failed, 77 cannot run here (a tool or the image missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bin="${1:-$root/target/debug/rehost}"
MEM=1024
SMP=2
BOOT_TIMEOUT="${REHOST_VM_BOOT_TIMEOUT:-1200}"   # seconds, per boot (TCG is slow)

log() { printf 'vm-drill: %s\n' "$*" >&2; }
cannot() { echo "vm-drill: cannot run: $*" >&2; exit 77; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

for tool in qemu-system-x86_64 qemu-img cloud-localds ssh curl s3cmd python3 strip cloud-init gzip age age-keygen; do
    command -v "$tool" >/dev/null 2>&1 || cannot "$tool not found (scripts/install-tools.sh installs it)"
done
[ -x "$bin" ] || cannot "$bin: no rehost binary (cargo build -p rehost)"

run_id="vmd$(date +%s)$$"
work="$root/target/vm-drill/$run_id"
mkdir -p "$work/www"
declare -A vm_pid=() vm_ssh=() vm_web=() vm_t0=()
pids=()
garage_dir=""
keep=0

cleanup() {
    local rc=$?
    for name in "${!vm_pid[@]}"; do
        kill -KILL "${vm_pid[$name]}" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -f "$work"/*.qcow2
    if [ -n "$garage_dir" ]; then
        "$here/garage.sh" stop "$garage_dir" >/dev/null 2>&1 || true
    fi
    if [ "$rc" = 0 ] && [ "$keep" = 0 ]; then
        rm -rf "$work"
    else
        log "logs kept in $work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ failures

vssh() { # NAME COMMAND...: run COMMAND as root in the guest (bounded)
    local name="$1"
    shift
    timeout 120 ssh -q -i "$img/drill_key" -p "${vm_ssh[$name]}" \
        -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=5 -o LogLevel=ERROR root@127.0.0.1 "$@"
}

dump() { # NAME: what a failed step needs to be understood
    local name="$1"
    echo "----- $name: serial console (last 200 lines) -----" >&2
    tail -n 200 "$work/$name.console" 2>/dev/null | tr -d '\r' >&2 || true
    echo "----- $name: journalctl -u rehost-boot -u rehost -----" >&2
    vssh "$name" journalctl --no-pager -o short-precise -u rehost-boot -u rehost >&2 \
        || echo "(the guest does not answer over SSH)" >&2
    echo "----- $name: cloud-init status --long; /var/log/cloud-init-output.log (last 60 lines) -----" >&2
    vssh "$name" 'cloud-init status --long; tail -n 60 /var/log/cloud-init-output.log' >&2 || true
    echo "----- $name: end -----" >&2
}

fail() {
    echo "vm-drill: FAILED: $*" >&2
    local name
    for name in "${!vm_pid[@]}"; do
        if kill -0 "${vm_pid[$name]}" 2>/dev/null; then dump "$name"; fi
    done
    exit 1
}

# wait_for NAME DESCRIPTION TIMEOUT COMMAND...: poll COMMAND every 2 s.
wait_for() {
    local name="$1" what="$2" timeout="$3" start=$SECONDS
    shift 3
    until "$@" >/dev/null; do
        if [ -n "$name" ] && ! kill -0 "${vm_pid[$name]}" 2>/dev/null; then
            tail -n 20 "$work/$name.qemu.log" >&2 || true
            fail "$name: QEMU exited while waiting for $what"
        fi
        [ $((SECONDS - start)) -lt "$timeout" ] || fail "${name:+$name: }timed out after ${timeout}s waiting for $what"
        sleep 2
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- the image

img="$("$here/vm-image.sh")" || cannot "scripts/vm-image.sh failed"
for f in disk.raw vmlinuz initrd.img drill_key; do
    [ -e "$img/$f" ] || cannot "$img/$f missing"
done

# KVM, if it runs a guest here: a kernel without a root file system reaches
# its "unable to mount root" panic in a few seconds under a working KVM.
accel="${REHOST_VM_ACCEL:-}"
if [ -z "$accel" ]; then
    accel=tcg
    if [ -w /dev/kvm ]; then
        timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -display none -vga none \
            -no-reboot -serial "file:$work/kvm-probe.console" -kernel "$img/vmlinuz" \
            -append "console=ttyS0 panic=-1 root=/dev/nonexistent" >"$work/kvm-probe.log" 2>&1 || true
        if grep -q "Unable to mount root\|Kernel panic" "$work/kvm-probe.console" 2>/dev/null; then
            accel=kvm
        else
            log "KVM does not run a guest here ($(grep -m1 -i 'error\|failure' "$work/kvm-probe.log" || echo 'no kernel output')): TCG"
        fi
    else
        log "no usable /dev/kvm: TCG"
    fi
fi
case "$accel" in
    kvm) accel_args=(-accel kvm -cpu host) ;;
    tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
    *) cannot "REHOST_VM_ACCEL=$accel: expected kvm or tcg" ;;
esac
log "accelerator: $accel; image: $img"

# ------------------------------------------------------------------- Garage

if [ -z "${REHOST_TEST_S3_ENDPOINT:-}" ]; then
    garage_dir="$root/target/garage-vm"
    "$here/garage.sh" start "$garage_dir" >/dev/null || cannot "could not start Garage in $garage_dir"
    set -a
    # shellcheck disable=SC1091
    . "$garage_dir/env"
    set +a
    store_desc="Garage (scripts/garage.sh), single node, started by the drill in target/garage-vm"
else
    store_desc="the S3 store of make test ($REHOST_TEST_S3_ENDPOINT; Garage under scripts/test.sh)"
fi
s3_port="${REHOST_TEST_S3_ENDPOINT##*:}"
s3_port="${s3_port%/}"
bucket="$REHOST_TEST_S3_BUCKET"
cat >"$work/s3cmd.cfg" <<EOF
[default]
access_key = $REHOST_TEST_S3_ACCESS_KEY_ID
secret_key = $REHOST_TEST_S3_SECRET_ACCESS_KEY
host_base = 127.0.0.1:$s3_port
host_bucket = 127.0.0.1:$s3_port
use_https = False
signature_v2 = False
bucket_location = ${REHOST_TEST_S3_REGION:-garage}
EOF
chmod 0600 "$work/s3cmd.cfg"
s3() { env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY s3cmd -c "$work/s3cmd.cfg" --no-progress "$@" >/dev/null; }

host="vm-drill-$run_id"
storage_url="s3://$bucket/$run_id/hosts"
content_url="s3://$bucket/$run_id/content/"

# The site's content, as a CI job would upload it.
mkdir -p "$work/site/css"
site_body="<h1>rehost VM drill $run_id</h1>"
printf '%s\n' "$site_body" >"$work/site/index.html"
printf 'body { color: teal }\n' >"$work/site/css/site.css"
s3 sync "$work/site/" "$content_url" || fail "s3cmd sync of the site content"

# --------------------------------------------- the binary and the user-data

# Served from this machine's loopback (10.0.2.2 in the guest), stripped: the
# debug binary is mostly debug info.
strip -o "$work/www/rehost" "$bin"
sha="$(sha256sum "$work/www/rehost" | cut -d' ' -f1)"
http_port="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$http_port" >"$work/http.log" 2>&1 &
pids+=($!)

# The stack variant, plus the production images/rehost (rehost-image.sh).
variant="$work/images"
mkdir -p "$variant"
cp -R "$root/tests/fixtures/vm-stack/." "$variant/"
cp -R "$root/images/rehost" "$variant/rehost"

umask 077
# The age key every backup of the drill is encrypted to (the default of the
# shipped rehost.yaml), made fresh for this run.
rm -f "$work/age.key"
age-keygen -o "$work/age.key" 2>/dev/null || fail "age-keygen (Debian's age; scripts/install-tools.sh)"
age_recipient="$(age-keygen -y "$work/age.key")"
age_identity="$(grep '^AGE-SECRET-KEY-1' "$work/age.key")"
cat >"$work/values.env" <<EOF
REHOST_HOST=$host
REHOST_STORAGE_URL=$storage_url
REHOST_S3_ENDPOINT=http://10.0.2.2:$s3_port
REHOST_S3_REGION=${REHOST_TEST_S3_REGION:-garage}
REHOST_CONTENT_URL=$content_url
AWS_ACCESS_KEY_ID=$REHOST_TEST_S3_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$REHOST_TEST_S3_SECRET_ACCESS_KEY
REHOST_AGE_RECIPIENT=$age_recipient
REHOST_AGE_IDENTITY=$age_identity
DOMAIN=drill.test
ACME_EMAIL=drill@drill.test
ACME_CA_SERVER=https://acme.drill.test/directory
GRAFANA_ADMIN_PASSWORD=drill-password
TRAEFIK_DASHBOARD_HTPASSWD=admin:\$2y\$05\$0Jg8tq6H0fRyGx1y0g7B2eYy8kYV8o6mQFf8oE6F1O0tH3Q9mZ7K2
REHOST_BINARY_URL=http://10.0.2.2:$http_port/rehost
REHOST_BINARY_SHA256=$sha
EOF
REHOST_RENDER_IMAGES="$variant" "$root/cloud-init/render.sh" "$work/values.env" "$work/user-data" 2>/dev/null \
    || fail "render.sh (plain)"
REHOST_RENDER_IMAGES="$variant" "$root/cloud-init/render.sh" --gzip "$work/values.env" "$work/user-data.gz" \
    || fail "render.sh --gzip"
umask 022
cloud-init schema --config-file "$work/user-data" >"$work/schema.log" 2>&1 \
    || { cat "$work/schema.log" >&2; fail "cloud-init schema refuses the rendered user-data"; }
gzip -dc "$work/user-data.gz" | cmp -s - "$work/user-data" || fail "the gzipped user-data is not the rendered one"
ud_size="$(wc -c <"$work/user-data.gz")"
[ "$ud_size" -le 16384 ] || fail "the delivered user-data is $ud_size bytes, over 16384"
log "user-data: $(wc -c <"$work/user-data") bytes, $ud_size gzipped as delivered (limit 16384); schema valid"

printf '#cloud-config\nruncmd:\n  - [sh, -c, "echo rehost-vm-floor-done >/dev/console"]\n' | gzip -9n >"$work/floor-user-data.gz"

# ------------------------------------------------------- host registration

# The host's own configuration, pointing at the same Garage from here.
host_env=(REHOST_HOST="$host" REHOST_STORAGE_URL="$storage_url"
          REHOST_S3_ENDPOINT="http://127.0.0.1:$s3_port" REHOST_S3_REGION="${REHOST_TEST_S3_REGION:-garage}"
          REHOST_CONTENT_URL="$content_url" REHOST_STACK_DIR="$variant/stack"
          AWS_ACCESS_KEY_ID="$REHOST_TEST_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$REHOST_TEST_S3_SECRET_ACCESS_KEY"
          REHOST_AGE_RECIPIENT="$age_recipient")
host_rehost() { env "${host_env[@]}" "$bin" -c "$root/images/stack/rehost.yaml" "$@"; }

host_rehost init >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; fail "rehost init $host"; }
log "rehost init: $host registered"

# -------------------------------------------------------------------- VMs

start_vm() { # NAME USER_DATA
    local name="$1" ud="$2"
    qemu-img create -q -f qcow2 -F raw -b "$img/disk.raw" "$work/$name.qcow2"
    printf 'instance-id: %s-%s\nlocal-hostname: %s\n' "$run_id" "$name" "$name" >"$work/$name.meta-data"
    cloud-localds "$work/$name.seed.img" "$ud" "$work/$name.meta-data"
    vm_ssh[$name]="$(free_port)"
    vm_web[$name]="$(free_port)"
    vm_t0[$name]="$(now)"
    qemu-system-x86_64 -name "$name" "${accel_args[@]}" -m "$MEM" -smp "$SMP" \
        -display none -vga none -no-reboot -rtc base=utc \
        -serial "file:$work/$name.console" \
        -kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 net.ifnames=0" \
        -drive "file=$work/$name.qcow2,if=virtio,format=qcow2" \
        -drive "file=$work/$name.seed.img,if=virtio,format=raw,readonly=on" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:${vm_web[$name]}-:80,hostfwd=tcp:127.0.0.1:${vm_ssh[$name]}-:22" \
        -device virtio-net-pci,netdev=n0 \
        >"$work/$name.qemu.log" 2>&1 &
    vm_pid[$name]=$!
    log "$name: QEMU started (pid ${vm_pid[$name]}, site on 127.0.0.1:${vm_web[$name]}, ssh on ${vm_ssh[$name]})"
}

kill_vm() { # NAME: power off, no shutdown
    kill -KILL "${vm_pid[$1]}" 2>/dev/null || true
    wait "${vm_pid[$1]}" 2>/dev/null || true
    unset "vm_pid[$1]"
    rm -f "$work/$1.qcow2"
    log "$1: killed (power off)"
}

site_ok() { # NAME
    [ "$(curl -fsS --max-time 5 "http://127.0.0.1:${vm_web[$1]}/" 2>/dev/null)" = "$site_body" ]
}

# as_rehost NAME ARGS...: rehost ARGS in the guest as the rehost user, with
# the units' environment file.
as_rehost() {
    local name="$1"
    shift
    vssh "$name" "runuser -u rehost -- sh -c 'set -a; . /etc/rehost/rehost.env; set +a; exec /usr/local/bin/rehost \"\$@\"' rehost $*"
}

metric() { # NAME FILE SERIES: the value, or nothing
    vssh "$1" "cat /srv/monitoring/$2 2>/dev/null" | awk -v s="$3" '$1 == s { print $2 }'
}

# The time of the last attempt of a job that succeeded, or 0.
last_ok_attempt() { # NAME JOB TARGET
    local f="rehost-$2-$3.prom" sel="{job=\"$2\",target=\"$3\"}" status attempt
    status="$(metric "$1" "$f" "rehost_job_last_status$sel")"
    attempt="$(metric "$1" "$f" "rehost_job_last_attempt_timestamp_seconds$sel")"
    if [ "$status" = 1 ] && [ -n "$attempt" ]; then printf '%.0f\n' "$attempt"; else echo 0; fi
}

backed_up_since() { # NAME JOB TARGET TIME
    [ "$(last_ok_attempt "$1" "$2" "$3")" -gt "$4" ]
}

# The value of process_start_time_seconds of Prometheus at TIME (one value
# per Prometheus process: a restored sample is told from a new one).
prom_at() { # NAME TIME
    vssh "$1" "curl -fsS --max-time 10 'http://127.0.0.1:9090/api/v1/query?query=process_start_time_seconds%7Bjob%3D%22prometheus%22%7D&time=$2'" 2>/dev/null \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}

prom_sample() { # NAME -> "TIME VALUE", a sample Prometheus holds now
    local t v
    t=$(( $(vssh "$1" 'date +%s') - 10 ))
    v="$(prom_at "$1" "$t")"
    [ -n "$v" ] && echo "$t $v"
}

# The site answers; a failed rehost-boot.service (asked every 5th poll)
# fails the step at once instead of at the timeout.
site_or_boot_failed() { # NAME
    site_ok "$1" && return 0
    polls=$((polls + 1))
    if [ $((polls % 5)) = 0 ] && vssh "$1" 'systemctl is-failed --quiet rehost-boot.service' 2>/dev/null; then
        fail "$1: rehost-boot.service failed"
    fi
    return 1
}

recover_line=()
recover_rows=()
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
# recovered NAME WHAT: wait for the site, then record the time to recover and
# rehost's share (restore + up) from rehost-boot.prom.
recovered() {
    local name="$1" secs boot restore up docker
    polls=0
    wait_for "$name" "the site on 127.0.0.1:${vm_web[$name]}" "$BOOT_TIMEOUT" site_or_boot_failed "$name"
    secs="$(since "${vm_t0[$name]}")"
    wait_for "$name" "SSH" 120 vssh "$name" true
    boot="$(vssh "$name" 'cat /srv/monitoring/rehost-boot.prom')" || fail "$name: no rehost-boot.prom"
    step() { awk -v s="rehost_boot_step_duration_seconds{step=\"$1\"}" '$1 == s { printf "%.1f", $2 }' <<<"$boot"; }
    restore="$(step restore)"
    up="$(step up)"
    docker="$(step docker)"
    [ -n "$restore" ] && [ -n "$up" ] || fail "$name: rehost-boot.prom lacks the restore/up steps"
    recover_rows+=("| $name ($2) | $secs s | $(awk -v r="$restore" -v u="$up" 'BEGIN { printf "%.1f", r + u }') s | $restore s | $up s | ${docker:-?} s |")
    recover_line+=("$(printf '%-6s %8ss %14s %8ss %8ss %8ss' "$name" "$secs" \
        "$(awk -v r="$restore" -v u="$up" 'BEGIN { printf "%.1fs", r + u }')" "$restore" "$up" "${docker:-?}")")
    log "$name: recovered in ${secs}s (rehost: restore ${restore}s + up ${up}s; waiting for Docker ${docker:-?}s)"
}

# The daemon runs as the rehost user, and was handed the state.
check_jobs_as_rehost() { # NAME
    local name="$1" pid user
    pid="$(vssh "$name" 'systemctl show -p MainPID --value rehost.service')"
    [ -n "$pid" ] && [ "$pid" != 0 ] || fail "$name: rehost.service is not running"
    user="$(vssh "$name" "stat -c %U /proc/$pid")"
    [ "$user" = rehost ] || fail "$name: rehost.service runs as $user, not rehost"
    vssh "$name" 'systemctl is-active rehost-boot.service' >/dev/null || fail "$name: rehost-boot.service is not active"
}

# The cloud-init run finished without errors (provisioning included).
check_cloud_init() { # NAME
    wait_for "$1" "cloud-init to finish" 600 vssh "$1" 'cloud-init status | grep -q "status: \(done\|error\)"'
    vssh "$1" 'cloud-init status' | grep -q 'status: done' || fail "$1: cloud-init finished with errors"
}

# Step 3, the handover: once VM2 booted (a newer generation of the host),
# VM1 may no longer back up.
check_vm1_taken_over() {
    local out rc=0
    out="$(as_rehost vm1 backup acme 2>&1)" || rc=$?
    [ "$rc" = 4 ] || { echo "$out" >&2; fail "vm1: rehost backup after VM2's boot exited $rc, expected 4"; }
    grep -q "taken over" <<<"$out" || { echo "$out" >&2; fail "vm1: the refusal does not say \"taken over\""; }
    superseded() { [ "$(metric vm1 rehost-generation.prom "rehost_generation_superseded{host=\"$host\"}")" = 1 ]; }
    wait_for vm1 "rehost_generation_superseded{host=\"$host\"} 1 in rehost-generation.prom" 180 superseded
    log "vm1: taken over: backup refused (exit 4), rehost_generation_superseded 1"
}

drill_t0=$SECONDS

# ------------------------------------------------------------------ step 1

log "step 1: VM1 boots on a registered host with an empty bucket"
start_vm vm1 "$work/user-data.gz"
recovered vm1 "first boot, empty bucket"
check_cloud_init vm1
check_jobs_as_rehost vm1
vssh vm1 'test -x /usr/local/bin/rehost && test -d /var/lib/rehost && stat -c "%U" /var/lib/rehost' | grep -qx rehost \
    || fail "vm1: /var/lib/rehost is not owned by rehost"
t1="$(vssh vm1 'date +%s')"
# No backup of acme.json yet: provisioning leaves it empty, and `kind: acme`
# refuses an empty file until Traefik (here: step 2) writes its JSON.
wait_for vm1 "a content pull's metrics" 420 backed_up_since vm1 pull site 0

# ------------------------------------------------------------------ step 2

log "step 2: VM1's state changes"
acme1="{\"le\":{\"Account\":{\"Email\":\"drill@drill.test\"},\"Certificates\":[],\"drill\":\"vm1-$run_id\"}}"
write_acme() { # NAME CONTENT -> guest time of the write
    vssh "$1" "umask 077; printf '%s' '$2' >/srv/acme/.acme.new && chown rehost:rehost /srv/acme/.acme.new && mv /srv/acme/.acme.new /srv/acme/acme.json && date +%s"
}
w1="$(write_acme vm1 "$acme1")"
wait_for vm1 "the daemon's backup of the new acme.json" 300 backed_up_since vm1 backup acme "$w1"
wait_for vm1 "Prometheus samples" 300 prom_sample vm1
read -r pt1 pv1 <<<"$(prom_sample vm1)"
as_rehost vm1 backup prometheus >"$work/vm1-backup-prometheus.log" 2>&1 \
    || { cat "$work/vm1-backup-prometheus.log" >&2; fail "vm1: rehost backup prometheus"; }
log "vm1: acme.json and Prometheus (process_start_time_seconds@$pt1 = $pv1) backed up"
# Encrypted by default: the store holds acme.json only as age files, which
# the drill's identity opens.
acme_objects="$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY s3cmd -c "$work/s3cmd.cfg" ls -r "$storage_url/$host/acme/" | awk '{ print $4 }' | grep '/data\.tar\.gz' || true)"
[ -n "$acme_objects" ] || fail "no data object of acme in the store"
if grep -qv '\.age$' <<<"$acme_objects"; then fail "acme.json stored unencrypted: $(grep -v '\.age$' <<<"$acme_objects" | head -n 1)"; fi
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY s3cmd -c "$work/s3cmd.cfg" --no-progress get "$(tail -n 1 <<<"$acme_objects")" "$work/acme.tar.gz.age" >/dev/null \
    || fail "s3cmd get of acme's newest data object"
age -d -i "$work/age.key" "$work/acme.tar.gz.age" | tar xzOf - >"$work/acme-by-hand.json" \
    || fail "the age identity does not open acme's backup"
log "vm1: acme.json is stored encrypted ($(wc -l <<<"$acme_objects") backup(s), age; opened by hand)"

# ------------------------------------------------------------------ step 3

log "step 3: VM2 boots from the same user-data while VM1 runs"
start_vm vm2 "$work/user-data.gz"
recovered vm2 "restores VM1's state, VM1 running"
check_cloud_init vm2
check_jobs_as_rehost vm2
[ "$(vssh vm2 'cat /srv/acme/acme.json')" = "$acme1" ] || fail "vm2: acme.json is not VM1's"
[ "$(prom_at vm2 "$pt1")" = "$pv1" ] || fail "vm2: Prometheus does not answer VM1's sample (@$pt1 = $pv1)"
check_vm1_taken_over

# ------------------------------------------------------------------ step 4

log "step 4: VM1 is killed; VM2's state changes and is backed up; VM2 is killed"
kill_vm vm1
acme2="{\"le\":{\"Account\":{\"Email\":\"drill@drill.test\"},\"Certificates\":[],\"drill\":\"vm2-$run_id\"}}"
w2="$(write_acme vm2 "$acme2")"
wait_for vm2 "the daemon's backup of VM2's acme.json" 300 backed_up_since vm2 backup acme "$w2"
# Samples of VM2's own Prometheus (a start time VM1's never had).
vm2_sample() { local s; s="$(prom_sample vm2)" && [ "${s#* }" != "$pv1" ]; }
wait_for vm2 "VM2's own Prometheus samples" 300 vm2_sample
read -r pt2 pv2 <<<"$(prom_sample vm2)"
as_rehost vm2 backup prometheus >"$work/vm2-backup-prometheus.log" 2>&1 \
    || { cat "$work/vm2-backup-prometheus.log" >&2; fail "vm2: rehost backup prometheus"; }
log "vm2: acme.json and Prometheus (@$pt2 = $pv2) backed up"
kill_vm vm2

# ------------------------------------------------------------------ step 5

log "step 5: VM3 boots from the same user-data"
start_vm vm3 "$work/user-data.gz"
recovered vm3 "restores VM2's last backups"
check_cloud_init vm3
[ "$(vssh vm3 'cat /srv/acme/acme.json')" = "$acme2" ] || fail "vm3: acme.json is not VM2's last backup"
[ "$(vssh vm3 'stat -c "%a %U" /srv/acme/acme.json')" = "600 rehost" ] \
    || fail "vm3: acme.json is $(vssh vm3 'stat -c "%a %U" /srv/acme/acme.json'), expected 600 rehost"
[ "$(prom_at vm3 "$pt2")" = "$pv2" ] || fail "vm3: Prometheus does not answer VM2's sample (@$pt2 = $pv2)"
[ "$(prom_at vm3 "$pt1")" = "$pv1" ] || fail "vm3: Prometheus does not answer VM1's sample (@$pt1 = $pv1)"
check_jobs_as_rehost vm3
vm3_boot="$(metric vm3 rehost-boot.prom rehost_boot_last_attempt_timestamp_seconds)"
vm3_boot="${vm3_boot%.*}"
wait_for vm3 "fresh metrics of the acme.json backup" 300 backed_up_since vm3 backup acme "$vm3_boot"
wait_for vm3 "fresh metrics of the content pull" 420 backed_up_since vm3 pull site "$vm3_boot"
owner="$(vssh vm3 'stat -c %U /srv/monitoring/rehost-backup-acme.prom')"
[ "$owner" = rehost ] || fail "vm3: the job metrics are written by $owner, not rehost"
kill_vm vm3

# ------------------------------------------------------------------- floor

# Last, alone: the same image, a user-data that only echoes a line.
start_vm floor "$work/floor-user-data.gz"
floor_done() { grep -q rehost-vm-floor-done "$work/floor.console" 2>/dev/null; }
wait_for floor "the floor user-data's runcmd" "$BOOT_TIMEOUT" floor_done
floor_secs="$(since "${vm_t0[floor]}")"
log "floor: boot to a finished no-op user-data in ${floor_secs}s"
kill_vm floor

total=$((SECONDS - drill_t0))
echo
echo "VM drill passed ($accel, -smp $SMP -m $MEM) in $total s; user-data $ud_size bytes gzipped"
printf '%-6s %9s %14s %9s %9s %9s\n' boot recover "rehost share" restore up docker
printf '%-6s %8ss\n' floor "$floor_secs"
printf '%s\n' "${recover_line[@]}"

# make vm-drill: the record for bench/RESULTS-vm.md.
if [ -n "${REHOST_VM_RESULTS:-}" ]; then
    {
        echo "# VM drill: time to recover on QEMU VMs"
        echo
        echo "Run $run_id ($(date -u +%Y-%m-%dT%H:%MZ)), \`make vm-drill\` (scripts/vm-drill.sh): $("$bin" --version),"
        echo "stripped debug build served to the guests; Debian bookworm image $(basename "$img") (scripts/vm-image.sh);"
        echo "QEMU $(qemu-system-x86_64 --version | head -n 1 | awk '{ print $4 }'), accelerator **$accel**, each VM -smp $SMP -m $MEM."
        echo "Machine: $(nproc) cores, shared; load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
        echo "User-data: the production template, $ud_size bytes gzipped as delivered."
        echo "Store: $store_desc."
        echo
        echo "Passed in this run, besides the times below: VM2 restored VM1's acme.json and Prometheus samples"
        echo "while VM1 ran, and VM1's next backup was then refused (exit 4, \"taken over\","
        echo "rehost_generation_superseded 1); acme.json is stored only as age files that the drill's identity"
        echo "opens by hand; VM3 has VM2's last acme.json byte for byte (0600, owner rehost), VM1's and VM2's"
        echo "Prometheus samples, the site, the daemon as \`rehost\` and fresh job metrics."
        echo
        echo "Time to recover: from QEMU's start to the site answering through the forwarded port with"
        echo "the restored state in place (rehost-boot.service restores before it starts the stack)."
        echo "rehost's share: the restore and up steps of \`rehost boot\` (rehost-boot.prom); waiting for Docker"
        echo "is shown apart. Floor: the same image with a user-data that only echoes a line (kernel, systemd,"
        echo "cloud-init): what no user-data can beat here."
        echo
        echo "| boot | time to recover | rehost's share (restore + up) | restore | up | waiting for Docker |"
        echo "|---|---:|---:|---:|---:|---:|"
        echo "| floor (no-op user-data) | $floor_secs s | | | | |"
        for row in "${recover_rows[@]}"; do echo "$row"; done
        echo
        echo "Whole drill (floor + 3 VMs + the checks): $total s."
    } >"$REHOST_VM_RESULTS.tmp"
    mv -f "$REHOST_VM_RESULTS.tmp" "$REHOST_VM_RESULTS"
    log "wrote $REHOST_VM_RESULTS"
fi
