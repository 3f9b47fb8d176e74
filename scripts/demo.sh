#!/usr/bin/env bash
# Local demo (`make demo`): a real single-node Garage in target/garage-demo, and
# rehost backing up a host's state (a Traefik acme.json and a directory tree)
# under target/demo, losing it, and restoring it; then the same backup restored
# by hand with nothing but awscli, sha256sum and tar.
# `make demo-clean` stops Garage and removes target/garage-demo and target/demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
garage_dir="$root/target/garage-demo"
demo_dir="$root/target/demo"
cfg="$demo_dir/rehost.yaml"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
run() {
    printf '\n$ rehost %s\n' "$*" >&2
    "$rehost_bin" -c "$cfg" "$@"
}
digest_tree() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }

say "build rehost (release; the first build takes several minutes)"
cargo build --release -p rehost
rehost_bin="${CARGO_TARGET_DIR:-$root/target}/release/rehost"

say "tools (awscli for the by-hand restore, promtool)"
scripts/install-tools.sh

say "Garage (S3-compatible store)"
scripts/garage.sh install
scripts/garage.sh start "$garage_dir"
# shellcheck disable=SC1091
. "$garage_dir/env"

say "a host's state: Traefik's acme.json (0600) and a directory tree"
rm -rf "${demo_dir:?}"
mkdir -p "$demo_dir/srv/acme" "$demo_dir/srv/grafana/provisioning/dashboards"
printf '{"letsencrypt":{"Account":{"Email":"ops@example.com"},"Certificates":[]}}\n' \
    >"$demo_dir/srv/acme/acme.json"
chmod 600 "$demo_dir/srv/acme/acme.json"
for i in $(seq 1 50); do
    printf '{"title":"dashboard %s","panels":[]}\n' "$i" \
        >"$demo_dir/srv/grafana/provisioning/dashboards/d$i.json"
done
ln -s dashboards "$demo_dir/srv/grafana/provisioning/current"
cat >"$cfg" <<YAML
host: demo-host
storage:
  url: s3://$REHOST_TEST_S3_BUCKET/demo
  endpoint: $REHOST_TEST_S3_ENDPOINT
  region: $REHOST_TEST_S3_REGION
  path_style: true
  credentials_file: $REHOST_TEST_S3_CREDENTIALS_FILE
state:
  acme:
    path: $demo_dir/srv/acme/acme.json
    mode: "0600"
    required: true
    keep: { last: 3 }
  grafana:
    path: $demo_dir/srv/grafana/provisioning
    keep: { last: 3, daily: 7 }
metrics:
  textfile_dir: $demo_dir/metrics
YAML
echo "config: $cfg" >&2

run check
run backup
say "an unchanged source uploads nothing"
run backup
run backups list

say "verify: download and check every checksum, restore nothing"
run verify

say "disaster: the VM is gone, and its state with it"
before=$(digest_tree "$demo_dir/srv")
rm -rf "${demo_dir:?}/srv"
ls "$demo_dir" >&2

run --dry-run restore
run restore
after=$(digest_tree "$demo_dir/srv")
if [ "$before" != "$after" ]; then
    echo "demo: the restored state differs from what was lost" >&2
    exit 1
fi
echo "restored state is byte-identical to what was lost" >&2
ls -l "$demo_dir/srv/acme/acme.json" >&2

say "metrics for node_exporter's textfile collector"
ls "$demo_dir/metrics" >&2
cat "$demo_dir/metrics/rehost-backup-acme.prom"
if command -v promtool >/dev/null; then
    # One file at a time, as node_exporter reads them.
    for f in "$demo_dir"/metrics/*.prom; do
        promtool check metrics <"$f"
    done
    echo "promtool check metrics: OK for every file" >&2
fi

say "restore by hand, without rehost: aws s3 cp | sha256sum, then | tar xzf -"
id=$("$rehost_bin" -c "$cfg" -q backups list grafana | awk '$1 == "grafana" {id = $2} END {print id}')
prefix="s3://$REHOST_TEST_S3_BUCKET/demo/demo-host/grafana/$id"
aws_cfg="$demo_dir/aws-config"
printf '[default]\ns3 =\n    addressing_style = path\nrequest_checksum_calculation = when_required\nresponse_checksum_validation = when_required\n' \
    >"$aws_cfg"
s3() {
    env -u AWS_CA_BUNDLE -u AWS_PROFILE \
        AWS_CONFIG_FILE="$aws_cfg" AWS_SHARED_CREDENTIALS_FILE="$REHOST_TEST_S3_CREDENTIALS_FILE" \
        AWS_DEFAULT_REGION="$REHOST_TEST_S3_REGION" \
        aws --endpoint-url "$REHOST_TEST_S3_ENDPOINT" s3 "$@"
}
printf '$ aws s3 cp %s/manifest.json -   # the sha256 of data.tar.gz\n' "$prefix" >&2
want=$(s3 cp "$prefix/manifest.json" - |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"][0]["sha256"])')
printf '$ aws s3 cp %s/data.tar.gz - | sha256sum\n' "$prefix" >&2
got=$(s3 cp "$prefix/data.tar.gz" - | sha256sum | cut -d' ' -f1)
echo "manifest says $want" >&2
echo "download is   $got" >&2
if [ "$want" != "$got" ]; then
    echo "demo: checksum mismatch" >&2
    exit 1
fi
mkdir -p "$demo_dir/by-hand"
printf '$ aws s3 cp %s/data.tar.gz - | tar xzf - -C %s\n' "$prefix" "$demo_dir/by-hand" >&2
s3 cp "$prefix/data.tar.gz" - | tar xzf - -C "$demo_dir/by-hand"
diff -r "$demo_dir/by-hand" "$demo_dir/srv/grafana/provisioning"
echo "the by-hand restore matches" >&2

say "done. Garage keeps running for you to explore (. $garage_dir/env); make demo-clean stops it"
