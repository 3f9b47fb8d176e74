#!/usr/bin/env bash
# The whole test run (`make test`, `.ci/run`): install the tools, start a real
# Garage in target/garage-test and a 3-node Garage cluster in
# target/garage-cluster-test, then fmt check, clippy, build and nextest with
# the single node's REHOST_TEST_* settings exported and REHOST_TEST_CLUSTER_DIR
# naming the cluster's directory (tests/e2e/cluster.rs reads its env file).
# Both are always stopped at the end, and the exit status of the failing step
# is preserved.
#
# Under CI=true, CI is passed through to the tests: they must fail, not skip,
# when Garage or Docker is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
garage_dir="$root/target/garage-test"
cluster_dir="$root/target/garage-cluster-test"
CARGO="${CARGO:-cargo}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "install tools"
scripts/install-tools.sh

cleanup() {
    local rc=$?
    step "stop Garage"
    scripts/garage.sh stop "$garage_dir" || echo "test.sh: warning: could not stop Garage in $garage_dir" >&2
    scripts/garage-cluster.sh stop "$cluster_dir" >/dev/null \
        || echo "test.sh: warning: could not stop the Garage cluster in $cluster_dir" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "start Garage ($garage_dir, fresh)"
scripts/garage.sh stop "$garage_dir" >/dev/null
rm -rf "$garage_dir"
scripts/garage.sh start "$garage_dir"
set -a
# shellcheck disable=SC1091
. "$garage_dir/env"
set +a

step "start the 3-node Garage cluster ($cluster_dir, fresh)"
scripts/garage-cluster.sh stop "$cluster_dir" >/dev/null
rm -rf "$cluster_dir"
scripts/garage-cluster.sh start "$cluster_dir"
# Not sourced: its REHOST_TEST_* would replace the single node's.
export REHOST_TEST_CLUSTER_DIR="$cluster_dir"
if [ -n "${CI:-}" ]; then
    export CI
fi

step "test images (scripts/test-images.sh)"
if docker info >/dev/null 2>&1; then
    scripts/test-images.sh >/dev/null
elif [ "${CI:-}" = true ]; then
    echo "test.sh: CI=true but the Docker Engine is not reachable (the stack tests need it)" >&2
    exit 1
else
    echo "test.sh: Docker not reachable: the stack tests will be skipped" >&2
fi

step "cargo fmt --check"
"$CARGO" fmt --all -- --check

step "cargo clippy"
"$CARGO" clippy --workspace --all-targets -- -D warnings

step "cargo build -p rehost"
"$CARGO" build -p rehost

step "cargo nextest (all but the VM drill)"
rc=0
"$CARGO" nextest run --workspace --no-fail-fast -E 'not binary(vm_drill)' || rc=$?
# The VM drill (README, "The VM drill") last and alone: its QEMU guests take
# both cores, and run beside the other tests every one of them slows down.
# Its output (recovery times, or a failed guest's console and journal) is
# shown as it goes.
step "cargo nextest (the VM drill)"
"$CARGO" nextest run --workspace --no-fail-fast --no-capture -E 'binary(vm_drill)' || rc=$?
exit "$rc"
