#!/usr/bin/env bash
# The Docker image the Debian package is installed into by its test
# (tests/e2e/deb_package.rs): a Debian bookworm root file system made with
# mmdebstrap (variant minbase, plus systemd for `systemd-analyze verify`
# and passwd, which the package depends on), imported with `docker import`:
# no container registry.
#
#   scripts/deb-test-image.sh          build the image unless it exists; print its name
#   scripts/deb-test-image.sh --key    print the cache key only
#
# The image is rehost-test/deb-bookworm:<key>, <key> being a sha256 of the
# suite, the package list and this script: a change to any of them makes a
# new image (older tags are removed). The root file system's tarball is kept
# in $REHOST_CACHE/deb-test/<key>.tar (default ~/.cache/rehost), so a Docker
# that lost its images imports it again in seconds instead of running
# mmdebstrap (~2 min). Idempotent; concurrent runs wait on a lock there.
set -euo pipefail

REHOST_CACHE="${REHOST_CACHE:-$HOME/.cache/rehost}"
CACHE="$REHOST_CACHE/deb-test"
SUITE=bookworm
PACKAGES=(systemd passwd)
REPO=rehost-test/deb-bookworm

log() { echo "deb-test-image: $*" >&2; }
die() { echo "deb-test-image: error: $*" >&2; exit 1; }

key_only=0
case "${1:-}" in
    --key) key_only=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

key="$(printf '%s\n%s\n%s\n' "$SUITE" "${PACKAGES[*]}" "$(sha256sum "$0" | cut -d' ' -f1)" \
    | sha256sum | cut -c1-16)"
if [ "$key_only" = 1 ]; then
    echo "$key"
    exit 0
fi
image="$REPO:$key"

for tool in mmdebstrap docker; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-tools.sh installs it)"
done
docker info >/dev/null 2>&1 || die "Docker Engine not reachable"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another deb-test-image.sh has held $CACHE/.lock for 15 minutes"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

tarball="$CACHE/$key.tar"
started=$SECONDS
if [ ! -s "$tarball" ]; then
    log "mmdebstrap $SUITE (minbase + ${PACKAGES[*]})"
    tmp="$CACHE/.build-$key.tar"
    rm -f "$tmp"
    pkgs="$(IFS=,; echo "${PACKAGES[*]}")"
    # The tree in a tarball, for `docker import`; apt's lists and cache are
    # left out (mmdebstrap cleans them), the package needs none.
    timeout 1200 mmdebstrap --variant=minbase --include="$pkgs" "$SUITE" "$tmp" \
        >"$CACHE/mmdebstrap.log" 2>&1 \
        || { tail -n 30 "$CACHE/mmdebstrap.log" >&2; rm -f "$tmp"; die "mmdebstrap failed (log above)"; }
    mv "$tmp" "$tarball"
fi
log "docker import $tarball as $image"
docker import "$tarball" "$image" >/dev/null || die "docker import $tarball failed"

# Older keys: their images and tarballs.
for old in "$CACHE"/*.tar; do
    [ "$old" = "$tarball" ] || rm -f "$old"
done
docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" | while read -r tagged; do
    [ "$tagged" = "$image" ] || docker image rm "$tagged" >/dev/null 2>&1 || true
done
log "built $image in $((SECONDS - started)) s"
echo "$image"
