#!/usr/bin/env bash
# Build the rehost image (images/rehost/Dockerfile) FROM scratch, without any
# registry: stage the binary, the shared libraries `ldd` lists for it, CA
# certificates and passwd/group entries for uid/gid 10001, then `docker build`.
#
#   scripts/rehost-image.sh [BINARY]      BINARY defaults to target/release/rehost
#
# The image is tagged $REHOST_IMAGE (default rehost:local) and labelled with a
# sha256 of the staged context: when an image with that tag and label exists
# already, nothing is built (idempotent). Prints the tag on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
tag="${REHOST_IMAGE:-rehost:local}"
label=org.rehost.context-sha256

die() { echo "rehost-image: error: $*" >&2; exit 1; }
log() { echo "rehost-image: $*" >&2; }

case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
[ "$#" -le 1 ] || die "usage: $0 [BINARY]"
bin="${1:-$root/target/release/rehost}"
[ -f "$bin" ] && [ -x "$bin" ] || die "$bin: not an executable file (build it: cargo build --release -p rehost)"
command -v docker >/dev/null 2>&1 || die "docker not found"
certs=/etc/ssl/certs/ca-certificates.crt
[ -s "$certs" ] || die "$certs missing (Debian package ca-certificates)"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/rehost-image.XXXXXXXX")"
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$bin" "$rootfs/usr/local/bin/rehost"
install -m 0644 "$certs" "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$root/images/rehost/Dockerfile" "$ctx/Dockerfile"
printf '%s\n' 'root:x:0:0:root:/:/sbin/nologin' 'rehost:x:10001:10001:rehost:/nonexistent:/sbin/nologin' \
    >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'rehost:x:10001:' >"$rootfs/etc/group"

# Shared libraries, at the paths the dynamic loader will look for them:
#   libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
#   /lib64/ld-linux-x86-64.so.2 (0x...)
# A static binary has none ("not a dynamic executable" / "statically linked").
ldd_out="$(ldd "$bin" 2>&1)" || true
libs=()
while read -r line; do
    case "$line" in
        *"=> not found"*) die "ldd $bin: $line" ;;
        *"=> /"*) lib="${line#*=> }"; libs+=("${lib%% (*}") ;;
        /*) libs+=("${line%% (*}") ;;
    esac
done <<<"$ldd_out"
if [ "${#libs[@]}" -eq 0 ] && ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
    die "ldd $bin listed no library and does not say the binary is static: $ldd_out"
fi
for lib in "${libs[@]}"; do
    [ -f "$lib" ] || die "$lib (from ldd $bin) is missing"
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done

# The hash of what would be built: names, modes and contents, not times.
hash="$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$ctx" -cf - . | sha256sum)"
hash="${hash%% *}"
have="$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)"
if [ "$have" = "$hash" ]; then
    log "$tag is up to date (context $hash)"
else
    log "building $tag from $bin (${#libs[@]} libraries)"
    # The classic builder: what rehost's engine uses too, and the only one
    # needing no buildx plugin here. Its output goes to stderr.
    DOCKER_BUILDKIT=0 docker build -q --label "$label=$hash" -t "$tag" "$ctx" >&2 \
        || die "docker build of $tag failed"
fi
echo "$tag"
