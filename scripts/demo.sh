#!/usr/bin/env bash
# Local demo (`make demo`): a real single-node Garage in target/garage-demo and
# rehost backing up / restoring a directory under target/demo.
# `make demo-clean` stops Garage and removes target/garage-demo and target/demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
garage_dir="$root/target/garage-demo"
demo_dir="$root/target/demo"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

say "Garage (S3-compatible store)"
scripts/garage.sh install
scripts/garage.sh start "$garage_dir"
# shellcheck disable=SC1091
. "$garage_dir/env"
mkdir -p "$demo_dir"

# ---------------------------------------------------------------------------
# TODO(lead): rehost steps go here, once the CLI exists. Available now:
#   $REHOST_TEST_S3_ENDPOINT, $REHOST_TEST_S3_REGION, $REHOST_TEST_S3_BUCKET,
#   $REHOST_TEST_S3_CREDENTIALS_FILE (AWS shared-credentials file, [default]),
#   $demo_dir for the demo's state directories, config and metrics.
# e.g. write $demo_dir/rehost.yaml (storage.url s3://$REHOST_TEST_S3_BUCKET/demo,
# endpoint, region, path_style: true, credentials_file), then
# `rehost -c ... backup`, `rehost -c ... backups list`, wipe, `rehost -c ... restore`.
# ---------------------------------------------------------------------------

say "Demo Garage is running; stop it and clean up with: make demo-clean"
