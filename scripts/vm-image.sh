#!/usr/bin/env bash
# The Debian VM image of the VM drill (scripts/vm-drill.sh): what a cloud
# provider's Debian 12 image is, plus what the drill's offline guest cannot
# download at first boot.
#
#   scripts/vm-image.sh           build the image unless cached; print its directory
#   scripts/vm-image.sh --key     print the cache key only
#
# The directory ($REHOST_CACHE/vm/<key>, default ~/.cache/rehost/vm/<key>)
# holds disk.raw (ext4, the root file system, no partition table), vmlinuz
# and initrd.img (booted with QEMU's -kernel/-initrd, root=/dev/vda), and
# drill_key (the SSH key of root in the guest, see below). The key is a
# sha256 of the package list, this script and the test images baked in, so
# a change to any of them builds a new image; older images are removed.
#
# Made with mmdebstrap (no VM, no mount: `mkfs.ext4 -d` turns the tree into
# a disk), from Debian bookworm:
#   - the cloud kernel, systemd, cloud-init (NoCloud datasource only, so
#     that no metadata service is probed), ifupdown + DHCP;
#   - docker.io, apparmor, curl, ca-certificates: what the user-data's `packages:`
#     asks for, already installed (the guest reaches no Debian mirror; its
#     apt sources are empty, so `package_update` and `packages` succeed
#     offline, as they would with a mirror);
#   - the test images the drill's stack needs (scripts/test-images.sh:
#     busybox, prometheus) as `docker save` archives,
#     loaded by vm-test-images.service before rehost-boot.service: the
#     guest reaches no registry;
#   - openssh-server with one authorized key for root (drill_key): the
#     drill reads the guest's journal and files through it (port forwarded
#     to the host's loopback only).
# Idempotent; concurrent runs wait on a lock in the cache directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REHOST_CACHE="${REHOST_CACHE:-$HOME/.cache/rehost}"
CACHE="$REHOST_CACHE/vm"
SUITE=bookworm
PACKAGES=(linux-image-cloud-amd64 systemd-sysv cloud-init ifupdown isc-dhcp-client
          curl ca-certificates docker.io apparmor openssh-server procps iproute2)
DISK_SIZE=6G

log() { echo "vm-image: $*" >&2; }
die() { echo "vm-image: error: $*" >&2; exit 1; }

key_only=0
case "${1:-}" in
    --key) key_only=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

for tool in mmdebstrap mkfs.ext4 docker ssh-keygen; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-tools.sh installs it)"
done
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root keeps the tree's owners for mkfs.ext4 -d)"

# The images the drill's stack (tests/fixtures/vm-stack) is built from.
images=(rehost-test/busybox:latest rehost-test/prometheus:latest)
if [ "$key_only" = 0 ]; then
    "$here/test-images.sh" >/dev/null
fi
ids=""
for image in "${images[@]}"; do
    ids+="$image $(docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null || echo missing)"$'\n'
done
key="$(printf '%s\n%s\n%s\n%s\n' "$SUITE" "${PACKAGES[*]}" "$ids" "$(sha256sum "$0" | cut -d' ' -f1)" \
    | sha256sum | cut -c1-16)"
if [ "$key_only" = 1 ]; then
    echo "$key"
    exit 0
fi

out="$CACHE/$key"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another vm-image.sh has held $CACHE/.lock for 30 minutes"
if [ -e "$out/.done" ]; then
    echo "$out"
    exit 0
fi

work="$CACHE/.build-$key"
# A build killed mid-way leaves what mmdebstrap mounted in the tree (/sys,
# /proc, /dev): unmount it before removing the folder, and never let rm cross
# into a mount (it would reach the host's own files).
clean_work() {
    local m
    [ -d "$work" ] || return 0
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
    rm -rf --one-file-system "$work"
}
clean_work
rm -rf "$out"
mkdir -p "$work/extra/images"
trap clean_work EXIT
started=$SECONDS

log "docker save ${images[*]}"
for image in "${images[@]}"; do
    name="$(basename "${image%%:*}")"
    docker save -o "$work/extra/images/$name.tar" "$image"
done
ssh-keygen -q -t ed25519 -N '' -C rehost-vm-drill -f "$work/drill_key"

# The guest's additions, copied in by the customize hook below.
cat >"$work/extra/vm-test-images.service" <<'EOF'
# The drill's test images (docker save archives baked into the image): the
# guest reaches no registry. Loaded before rehost-boot.service builds the stack.
[Unit]
Description=load the VM drill's test images into Docker
Requires=docker.service
After=docker.service
Before=rehost-boot.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for f in /var/lib/rehost-vm/images/*.tar; do docker load -q -i "$f"; done'

[Install]
WantedBy=multi-user.target
EOF
cat >"$work/extra/sshd-drill.conf" <<'EOF'
# The VM drill reads the guest through SSH as root with its own key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
AuthorizedKeysFile /etc/ssh/drill_authorized_keys
UseDNS no
EOF
cat >"$work/extra/90-drill.cfg" <<'EOF'
# The drill's "cloud" is a NoCloud seed disk: probe nothing else.
datasource_list: [NoCloud, None]
# One host key type: RSA and ECDSA key generation costs ~25 s under TCG.
ssh_genkeytypes: [ed25519]
# The image has no `locales` package (cloud-init's default en_US.UTF-8
# would fail); C.UTF-8 is built into glibc.
locale: C.UTF-8
EOF

# Run by mmdebstrap (--mode=root) on this machine, with the tree as $1.
cat >"$work/extra/customize.sh" <<EOF
#!/bin/sh
set -eu
t="\$1"
install -d "\$t/var/lib/rehost-vm/images" "\$t/etc/systemd/system/multi-user.target.wants"
cp "$work/extra/images/"*.tar "\$t/var/lib/rehost-vm/images/"
install -m 0644 "$work/extra/vm-test-images.service" "\$t/etc/systemd/system/vm-test-images.service"
ln -sf /etc/systemd/system/vm-test-images.service "\$t/etc/systemd/system/multi-user.target.wants/vm-test-images.service"
install -m 0644 "$work/extra/sshd-drill.conf" "\$t/etc/ssh/sshd_config.d/drill.conf"
install -m 0644 "$work/drill_key.pub" "\$t/etc/ssh/drill_authorized_keys"
install -m 0644 "$work/extra/90-drill.cfg" "\$t/etc/cloud/cloud.cfg.d/90-drill.cfg"
echo "/dev/vda / ext4 rw,discard,errors=remount-ro 0 1" >"\$t/etc/fstab"
# Made per machine at first boot (cloud-init, systemd).
rm -f "\$t/etc/ssh/ssh_host_"* "\$t/etc/hostname"
: >"\$t/etc/machine-id"
# No mirror is reachable: empty sources make apt-get update a no-op.
: >"\$t/etc/apt/sources.list"
rm -rf "\$t/etc/apt/sources.list.d/"* "\$t/var/lib/apt/lists/"*
EOF
chmod 0755 "$work/extra/customize.sh"

log "mmdebstrap $SUITE (${PACKAGES[*]})"
pkgs="$(IFS=,; echo "${PACKAGES[*]}")"
timeout 1200 mmdebstrap --mode=root --variant=important --include="$pkgs" \
    --customize-hook="$work/extra/customize.sh"' "$1"' \
    "$SUITE" "$work/tree" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

vmlinuz="$(find "$work/tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)"
initrd="$(find "$work/tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n 1)"
[ -n "$vmlinuz" ] && [ -n "$initrd" ] || die "no kernel or initrd in the tree's /boot"
mkdir -p "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"
log "mkfs.ext4 -d ($DISK_SIZE, sparse)"
truncate -s "$DISK_SIZE" "$work/out/disk.raw"
mkfs.ext4 -q -F -L root -d "$work/tree" "$work/out/disk.raw" >"$work/mkfs.log" 2>&1 \
    || { cat "$work/mkfs.log" >&2; die "mkfs.ext4 -d failed"; }
install -m 0600 "$work/drill_key" "$work/out/drill_key"
printf '%s\n' "${PACKAGES[@]}" >"$work/out/packages"
touch "$work/out/.done"
mv "$work/out" "$out"

# Images of older keys: each is a few GiB.
for old in "$CACHE"/*/; do
    [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
log "built $out in $((SECONDS - started)) s"
echo "$out"
