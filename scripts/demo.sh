#!/usr/bin/env bash
# Local demo (`make demo`): a fresh "VM" booted by rehost, destroyed, and
# booted again, on this machine:
#
#   - a real single-node Garage (S3) in target/garage-demo, with a content
#     bucket seeded like a CI job would;
#   - a stack (busybox httpd serving the pulled site, Prometheus with the
#     admin API) from FROM-scratch test images (scripts/test-images.sh);
#   - state under target/demo/srv: Traefik's acme.json (0600), Prometheus'
#     TSDB (kind: prometheus), a Grafana-like provisioning tree;
#   - `rehost boot --no-run`, a pull, backups, metrics; then the disaster:
#     containers and every local directory removed; `rehost boot` again and
#     everything is back; finally one backup restored by hand with awscli,
#     sha256sum, age and tar only. Every backup is encrypted with age.
#
# The stack and Garage are stopped at the end (DEMO_KEEP=1 keeps them running
# to explore); `make demo-clean` removes whatever an interrupted run left.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
garage_dir="$root/target/garage-demo"
demo_dir="$root/target/demo"
cfg="$demo_dir/rehost.yaml"
project=rehost-demo

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
run() {
    printf '\n$ rehost %s\n' "$*" >&2
    "$rehost_bin" -c "$cfg" "$@"
}
digest_tree() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL, seconds
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "demo: $1 did not answer within $2 s" >&2
    return 1
}
prom_query() { # PROMQL, TIME -> the value of the first series
    curl -fsS -G "http://127.0.0.1:$prom_port/api/v1/query" \
        --data-urlencode "query=$1" --data-urlencode "time=$2" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}

say "build rehost (release; the first build takes several minutes)"
cargo build --release -p rehost
rehost_bin="${CARGO_TARGET_DIR:-$root/target}/release/rehost"

say "tools (awscli, s3cmd, promtool) and the test images (FROM scratch, no registry)"
scripts/install-tools.sh
scripts/test-images.sh

say "Garage (S3-compatible store)"
scripts/garage.sh install
scripts/garage.sh start "$garage_dir"
# shellcheck disable=SC1091
. "$garage_dir/env"

aws_cfg="$garage_dir/aws-config"
printf '[default]\ns3 =\n    addressing_style = path\nrequest_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n' \
    >"$aws_cfg"
s3() {
    env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
        AWS_CONFIG_FILE="$aws_cfg" AWS_SHARED_CREDENTIALS_FILE="$REHOST_TEST_S3_CREDENTIALS_FILE" \
        AWS_DEFAULT_REGION="$REHOST_TEST_S3_REGION" \
        aws --endpoint-url "$REHOST_TEST_S3_ENDPOINT" s3 "$@"
}

say "a clean slate: no containers of project $project, an empty prefix"
[ -x "$rehost_bin" ] && [ -f "$cfg" ] && "$rehost_bin" -q -c "$cfg" down --volumes >/dev/null 2>&1 || true
rm -rf "${demo_dir:?}"
s3 rm --recursive --quiet "s3://$REHOST_TEST_S3_BUCKET/demo/" || true

say "the site's content goes to a bucket (what a CI job does)"
mkdir -p "$demo_dir/site/css" "$demo_dir/stack"
printf '<!doctype html>\n<h1>Hello from rehost</h1>\n<p>served by a host rebuilt from a bucket</p>\n' \
    >"$demo_dir/site/index.html"
printf 'body { font-family: sans-serif }\n' >"$demo_dir/site/css/site.css"
s3 sync --quiet "$demo_dir/site/" "s3://$REHOST_TEST_S3_BUCKET/demo-content/site/"
s3 ls --recursive "s3://$REHOST_TEST_S3_BUCKET/demo-content/site/" >&2

say "the stack: docker-compose.yml (web + Prometheus) and rehost.yaml"
web_port=$(free_port)
prom_port=$(free_port)
cat >"$demo_dir/stack/docker-compose.yml" <<YAML
services:
  web:
    image: rehost-test/busybox:latest
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    volumes:
      - $demo_dir/srv/www:/www:ro
    ports:
      - "127.0.0.1:\${WEB_PORT}:80"
    healthcheck:
      test: ["CMD-SHELL", "wget -S -O /dev/null http://127.0.0.1/ 2>&1 | grep -q 'HTTP/1.[01] [24]0[04]'"]
      interval: 1s
      retries: 30
  prometheus:
    image: rehost-test/prometheus:latest
    command:
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.path=/prometheus
      - --web.enable-admin-api
    volumes:
      - $demo_dir/srv/prometheus:/prometheus
      - ./prometheus.yml:/etc/prometheus/prometheus.yml:ro
    ports:
      - "127.0.0.1:\${PROM_PORT}:9090"
    depends_on:
      web:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
      interval: 1s
      retries: 60
YAML
printf 'global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ["127.0.0.1:9090"]\n' \
    >"$demo_dir/stack/prometheus.yml"
printf 'WEB_PORT=%s\nPROM_PORT=%s\n' "$web_port" "$prom_port" >"$demo_dir/stack/stack.env"
# Every backup is encrypted with age, as in the shipped configurations: the
# identity stays on the "VM" and (keep a copy!) off it.
age-keygen -o "$demo_dir/age.key" 2>/dev/null
chmod 600 "$demo_dir/age.key"
recipient=$(age-keygen -y "$demo_dir/age.key")
cat >"$cfg" <<YAML
host: demo-host
state_dir: $demo_dir/machine
storage:
  url: s3://$REHOST_TEST_S3_BUCKET/demo
  endpoint: $REHOST_TEST_S3_ENDPOINT
  region: $REHOST_TEST_S3_REGION
  path_style: true
  credentials_file: $REHOST_TEST_S3_CREDENTIALS_FILE
  encryption:
    recipients: ["$recipient"]
    identity_file: $demo_dir/age.key
stack:
  compose: $demo_dir/stack/docker-compose.yml
  project: $project
  env_file: $demo_dir/stack/stack.env
state:
  acme:
    path: $demo_dir/srv/acme/acme.json
    kind: acme
    mode: "0600"
    required: true
    keep: { last: 3 }
  prometheus:
    path: $demo_dir/srv/prometheus
    kind: prometheus
    api: http://127.0.0.1:$prom_port
  grafana:
    path: $demo_dir/srv/grafana/provisioning
    keep: { last: 3, daily: 7 }
pull:
  site:
    source: s3://$REHOST_TEST_S3_BUCKET/demo-content/site/
    dest: $demo_dir/srv/www
    delete_removed: true
metrics:
  textfile_dir: $demo_dir/metrics
YAML
echo "config: $cfg" >&2

say "provisioning leaves an acme.json and a Grafana-like tree (a real VM: cloud-init)"
mkdir -p "$demo_dir/srv/acme" "$demo_dir/srv/grafana/provisioning/dashboards" \
    "$demo_dir/srv/prometheus" "$demo_dir/srv/www"
printf '{"letsencrypt":{"Account":{"Email":"ops@example.com"},"Certificates":[]}}\n' \
    >"$demo_dir/srv/acme/acme.json"
chmod 600 "$demo_dir/srv/acme/acme.json"
for i in $(seq 1 20); do
    printf '{"title":"dashboard %s","panels":[]}\n' "$i" \
        >"$demo_dir/srv/grafana/provisioning/dashboards/d$i.json"
done

run check

say "a new host is registered once (Terraform would run this); then its first boot: nothing in the bucket yet, the stack comes up"
run init
run boot --no-run
run pull
wait_http "http://127.0.0.1:$web_port/index.html" 30
printf '\n$ curl http://127.0.0.1:%s/\n' "$web_port" >&2
curl -fsS "http://127.0.0.1:$web_port/"

say "Prometheus scrapes for a while, then the scheduled jobs would back up; here by hand"
wait_http "http://127.0.0.1:$prom_port/-/ready" 60
sleep 10
# A moment before the snapshot: every sample up to it is in the backup.
at=$(($(date +%s) - 2))
run backup
run backups list
promql='count_over_time(up{job="prometheus"}[10m])'
samples=$(prom_query "$promql" "$at")
echo "Prometheus: $promql at $at = $samples" >&2
run status

say "metrics for node_exporter's textfile collector"
ls "$demo_dir/metrics" >&2
cat "$demo_dir/metrics/rehost-backup-acme.prom"
# kind: acme: the file's validity and its certificates (none yet in the demo's).
cat "$demo_dir/metrics/rehost-acme-acme.prom"
for f in "$demo_dir"/metrics/*.prom; do
    promtool check metrics <"$f"
done
echo "promtool check metrics: OK for every file" >&2

say "disaster: the VM is destroyed, its containers and every local directory with it"
acme_before=$(sha256sum <"$demo_dir/srv/acme/acme.json")
grafana_before=$(digest_tree "$demo_dir/srv/grafana")
run down
rm -rf "${demo_dir:?}/srv" "${demo_dir:?}/metrics" "${demo_dir:?}/machine"
ls "$demo_dir" >&2

say "a new VM boots: restore, up (rehost-boot.service does this)"
run boot --no-run
run pull
[ "$(sha256sum <"$demo_dir/srv/acme/acme.json")" = "$acme_before" ] || { echo "demo: acme.json differs" >&2; exit 1; }
[ "$(digest_tree "$demo_dir/srv/grafana")" = "$grafana_before" ] || { echo "demo: grafana tree differs" >&2; exit 1; }
ls -l "$demo_dir/srv/acme/acme.json" >&2
echo "acme.json and the Grafana tree are byte-identical to what was lost" >&2
wait_http "http://127.0.0.1:$prom_port/-/ready" 60
again=$(prom_query "$promql" "$at")
echo "Prometheus: $promql at $at = $again (before the disaster: $samples)" >&2
[ "$again" = "$samples" ] || { echo "demo: Prometheus lost samples" >&2; exit 1; }
wait_http "http://127.0.0.1:$web_port/index.html" 30
printf '\n$ curl http://127.0.0.1:%s/\n' "$web_port" >&2
curl -fsS "http://127.0.0.1:$web_port/"
cat "$demo_dir/metrics/rehost-boot.prom"

say "restore by hand, without rehost: aws s3 cp | sha256sum, then | age -d | tar xzf -"
id=$("$rehost_bin" -c "$cfg" -q backups list grafana | awk '$1 == "grafana" {id = $2} END {print id}')
prefix="s3://$REHOST_TEST_S3_BUCKET/demo/demo-host/grafana/$id"
printf '$ aws s3 cp %s/manifest.json -   # the sha256 of data.tar.gz.age\n' "$prefix" >&2
want=$(s3 cp "$prefix/manifest.json" - |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"][0]["sha256"])')
printf '$ aws s3 cp %s/data.tar.gz.age - | sha256sum\n' "$prefix" >&2
got=$(s3 cp "$prefix/data.tar.gz.age" - | sha256sum | cut -d' ' -f1)
echo "manifest says $want" >&2
echo "download is   $got" >&2
[ "$want" = "$got" ] || { echo "demo: checksum mismatch" >&2; exit 1; }
mkdir -p "$demo_dir/by-hand"
printf '$ aws s3 cp %s/data.tar.gz.age - | age -d -i age.key | tar xzf - -C %s\n' "$prefix" "$demo_dir/by-hand" >&2
s3 cp "$prefix/data.tar.gz.age" - | age -d -i "$demo_dir/age.key" | tar xzf - -C "$demo_dir/by-hand"
diff -r "$demo_dir/by-hand" "$demo_dir/srv/grafana/provisioning"
echo "the by-hand restore matches" >&2

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "done. The stack (project $project) and Garage keep running (DEMO_KEEP=1); make demo-clean removes them"
else
    say "done; cleaning up (DEMO_KEEP=1 keeps the stack and Garage running)"
    run down --volumes
    scripts/garage.sh stop "$garage_dir"
fi
