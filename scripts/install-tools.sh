#!/usr/bin/env bash
# Install (idempotently) the tools the tests need; with --bench also the peers
# the benchmark compares rehost with.
#
#   scripts/install-tools.sh            promtool, prometheus, /usr/bin/time, sqlite3, s3cmd, docker-compose, aws, garage,
#                                       and the checkers of the deployment files: amtool,
#                                       cloud-init (schema), systemd-analyze, envsubst,
#                                       node_exporter and curl (monitoring test),
#                                       script (util-linux: progress on a pseudo-terminal),
#                                       docker-registry and htpasswd (image pulls),
#                                       openssl (a test certificate for HTTPS notifications);
#                                       qemu-system-x86, mmdebstrap, cloud-image-utils (VM drill);
#                                       pebble, lego, openssl (kind: acme);
#                                       cargo-deb and dpkg-shlibdeps (`make deb`, the package test)
#   scripts/install-tools.sh --bench    + restic, rclone
#
# Nothing is downloaded when every binary is already present. Works as root
# with no stdin (CI=true); elsewhere uses sudo for apt-get when needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "install-tools: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

CARGO_DEB_VERSION=3.8.0

log() { echo "install-tools: $*" >&2; }
die() { echo "install-tools: error: $*" >&2; exit 1; }

# binary -> Debian package that provides it
declare -A apt_for=(
    [promtool]=prometheus
    [prometheus]=prometheus
    [/usr/bin/time]=time
    [sqlite3]=sqlite3
    [s3cmd]=s3cmd
    # Compose v1 (Debian's, with its Python package): the oracle the compose
    # loader's tests compare with. A Compose v2 binary elsewhere does not count.
    [/usr/bin/docker-compose]=docker-compose
    [amtool]=prometheus-alertmanager
    [cloud-init]=cloud-init
    [systemd-analyze]=systemd
    [envsubst]=gettext-base
    [prometheus-node-exporter]=prometheus-node-exporter
    [curl]=curl
    # util-linux `script`: runs rehost on a pseudo-terminal (progress bars).
    [script]=bsdutils
    # The reference age CLI: the by-hand restore of an encrypted backup is tested with it.
    [age]=age
    # The distribution registry and htpasswd (bcrypt): the stack's image pulls
    # are tested against a registry on loopback, with and without auth.
    [/usr/bin/docker-registry]=docker-registry
    [htpasswd]=apache2-utils
    # A test certificate for the HTTPS receiver of the notification tests
    # (and kind: acme's test, below, reads expiry dates with it).
    [openssl]=openssl
    # The VM drill (tests/e2e/vm_drill.rs, scripts/vm-image.sh): QEMU, the
    # Debian image builder, and cloud-localds for the NoCloud seed.
    [qemu-system-x86_64]=qemu-system-x86
    [mmdebstrap]=mmdebstrap
    [cloud-localds]=cloud-image-utils
    [mkfs.ext4]=e2fsprogs
    # kind: acme's test (tests/e2e/cli_acme.rs): certificates from a real ACME
    # flow, Let's Encrypt's test server and the ACME client Traefik uses;
    # openssl (above) reads their expiry dates for comparison.
    [pebble]=pebble
    [lego]=lego
    # cargo-deb computes the package's shared-library Depends with it.
    [dpkg-shlibdeps]=dpkg-dev
)
if [ "$bench" = 1 ]; then
    apt_for[restic]=restic
    apt_for[rclone]=rclone
fi

have() {
    case "$1" in
        /*) [ -x "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

missing_pkgs=()
for bin in "${!apt_for[@]}"; do
    have "$bin" || missing_pkgs+=("${apt_for[$bin]}")
done

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing_pkgs[*]}"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing_pkgs[*]}"
    # Debian's qemu-system-x86 (7.2) conflicts with a newer qemu-utils from
    # bookworm-backports (some machine images ship it alone): take
    # bookworm's qemu-utils with it, which nothing else here needs newer.
    downgrade=()
    if [[ " ${missing_pkgs[*]} " == *" qemu-system-x86 "* ]] && \
       dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
        missing_pkgs+=(qemu-utils/bookworm)
        downgrade=(--allow-downgrades)
    fi
    log "apt-get install ${missing_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    aptlog="$(mktemp)"
    trap 'rm -f "$aptlog"' EXIT
    if ! timeout 300 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >"$aptlog" 2>&1; then
        tail -n 20 "$aptlog" >&2
        die "apt-get update failed"
    fi
    if ! timeout 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends ${downgrade[@]+"${downgrade[@]}"} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing_pkgs[@]}" </dev/null >"$aptlog" 2>&1; then
        tail -n 20 "$aptlog" >&2
        die "apt-get install ${missing_pkgs[*]} failed"
    fi
    for bin in "${!apt_for[@]}"; do
        have "$bin" || die "$bin still missing after installing ${apt_for[$bin]}"
    done
    # cloud-init is here for `cloud-init schema` only: never let it
    # reconfigure this machine at its next boot.
    if [[ " ${missing_pkgs[*]} " == *" cloud-init "* ]]; then
        "${sudo[@]}" install -d /etc/cloud
        "${sudo[@]}" touch /etc/cloud/cloud-init.disabled
    fi
fi

# awscli (v1) from PyPI, only if `aws` is missing.
if ! have aws; then
    py="$(command -v python3 || true)"
    [ -n "$py" ] || die "python3 not found (needed for pip install awscli)"
    log "pip install awscli"
    pipflags=(--quiet --disable-pip-version-check --no-input)
    [ "$(id -u)" = 0 ] && pipflags+=(--root-user-action=ignore)
    piplog="$(mktemp)"
    if ! timeout 600 "$py" -m pip install "${pipflags[@]}" awscli </dev/null >"$piplog" 2>&1; then
        # Debian's system python refuses global installs (PEP 668): install for the user.
        if grep -q externally-managed "$piplog" && \
           timeout 600 "$py" -m pip install "${pipflags[@]}" --user --break-system-packages awscli </dev/null >"$piplog" 2>&1; then
            :
        else
            tail -n 20 "$piplog" >&2; rm -f "$piplog"
            die "pip install awscli failed"
        fi
    fi
    rm -f "$piplog"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
    hash -r
    if ! have aws; then
        userbin="$("$py" -m site --user-base 2>/dev/null)/bin"
        [ -x "$userbin/aws" ] && die "aws installed in $userbin, which is not in PATH; add it"
        die "aws still not found after pip install awscli"
    fi
fi

# cargo-deb (`make deb`, tests/e2e/deb_package.rs) from crates.io, only if
# missing. Pinned: the package test builds from the debug binary
# (`--profile dev`), which later versions may refuse.
if ! have cargo-deb; then
    log "cargo install --locked cargo-deb@$CARGO_DEB_VERSION"
    cdlog="$(mktemp)"
    if ! timeout 1800 cargo install --locked "cargo-deb@$CARGO_DEB_VERSION" </dev/null >"$cdlog" 2>&1; then
        tail -n 20 "$cdlog" >&2; rm -f "$cdlog"
        die "cargo install cargo-deb failed"
    fi
    rm -f "$cdlog"
    hash -r
    have cargo-deb || die "cargo-deb still not found after cargo install (is ~/.cargo/bin in PATH?)"
fi

# Garage (built from crates.io when absent: ~7 min).
"$here/garage.sh" install >/dev/null

if [ "$bench" = 1 ]; then
    log "ok: promtool prometheus amtool cloud-init systemd-analyze sqlite3 time aws garage qemu mmdebstrap cargo-deb restic rclone s3cmd"
else
    log "ok: promtool prometheus amtool cloud-init systemd-analyze sqlite3 time aws garage qemu mmdebstrap cargo-deb"
fi
