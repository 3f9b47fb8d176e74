#!/usr/bin/env bash
# Test images for the stack tests, the DR drill and the demo, built FROM
# scratch from Debian packages (no container registry is needed):
#
#   rehost-test/busybox:latest         busybox-static at /bin/busybox, every applet
#                                      linked in /bin (sh, httpd, wget, nc, ...),
#                                      /etc/passwd with root and nobody (65534), /tmp
#   rehost-test/prometheus:latest      the busybox image + /bin/prometheus and the libc
#                                      files it links; /etc/prometheus/prometheus.yml
#                                      scrapes itself; data in /prometheus; listens :9090
#   rehost-test/node-exporter:latest   the busybox image + /bin/prometheus-node-exporter
#                                      (static or with its libc files); listens :9100
#
#   scripts/test-images.sh            build what is missing or out of date, print the names
#   scripts/test-images.sh --list     print the names only
#
# Idempotent and safe to run concurrently (a lock in the cache directory):
# each image carries the label rehost.test.input-hash (sha256 of the
# .deb files, the libraries copied, the generated files and this script); an
# image whose label matches is not rebuilt. Packages are fetched with
# `apt-get download` into $REHOST_CACHE/test-images (default ~/.cache/rehost).
# Prints one image name per line on stdout; progress goes to stderr.
set -euo pipefail

REHOST_CACHE="${REHOST_CACHE:-$HOME/.cache/rehost}"
CACHE="$REHOST_CACHE/test-images"
LABEL=rehost.test.input-hash
IMAGES=(rehost-test/busybox:latest rehost-test/prometheus:latest rehost-test/node-exporter:latest)

log() { echo "test-images: $*" >&2; }
die() { echo "test-images: error: $*" >&2; exit 1; }

case "${1:-}" in
    --list) printf '%s\n' "${IMAGES[@]}"; exit 0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    "") ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

command -v docker >/dev/null 2>&1 || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "Docker Engine not reachable (is dockerd running? is the user in the docker group?)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: the images are made from Debian packages"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found"

mkdir -p "$CACHE/debs"
# One run at a time (tests in parallel, other checkouts on this machine):
# the cache and the image names are shared.
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another test-images.sh has held $CACHE/.lock for 15 minutes"
self_hash="$(sha256sum "$0" | cut -d' ' -f1)"

# deb PACKAGE: path of its .deb in the cache, downloaded when missing.
deb() {
    local pkg="$1" f
    f="$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)"
    if [ -z "$f" ]; then
        log "apt-get download $pkg"
        (cd "$CACHE/debs" && timeout 300 apt-get download -q -o APT::Sandbox::User=root "$pkg" </dev/null >&2) \
            || { timeout 300 apt-get update -q </dev/null >&2 || true
                 (cd "$CACHE/debs" && timeout 300 apt-get download -q -o APT::Sandbox::User=root "$pkg" </dev/null >&2); } \
            || die "apt-get download $pkg failed"
        f="$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)"
        [ -n "$f" ] || die "apt-get download $pkg left no ${pkg}_*.deb in $CACHE/debs"
    fi
    echo "$f"
}

# extract PACKAGE: directory holding the package's extracted files.
extract() {
    local pkg="$1" f dir
    f="$(deb "$pkg")"
    dir="$CACHE/x/$(basename "$f" .deb)"
    if [ ! -e "$dir/.done" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$f" "$dir"
        touch "$dir/.done"
    fi
    echo "$dir"
}

# add_libs BINARY ROOTFS: copy the shared libraries BINARY links (as ldd
# resolves them on this Debian host) to the same paths under ROOTFS.
add_libs() {
    local bin="$1" root="$2" lib
    if ! ldd "$bin" >/dev/null 2>&1; then
        return 0  # static
    fi
    while read -r lib; do
        [ -n "$lib" ] || continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$bin" | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(/ { print $1 }')
}

# tree_hash DIR: sha256 over the names, modes, link targets and contents of DIR.
tree_hash() {
    (cd "$1" && find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
        if [ -L "$p" ]; then echo "L $p $(readlink "$p")"
        elif [ -f "$p" ]; then echo "F $p $(stat -c %a "$p") $(sha256sum <"$p" | cut -d' ' -f1)"
        else echo "D $p $(stat -c %a "$p")"; fi
    done) | sha256sum | cut -d' ' -f1
}

# build IMAGE CONTEXT: docker build CONTEXT unless IMAGE has the same input hash.
build() {
    local image="$1" ctx="$2" want have
    want="$(printf '%s %s %s' "$self_hash" "$(tree_hash "$ctx")" "${3:-}" | sha256sum | cut -d' ' -f1)"
    have="$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$image" 2>/dev/null || true)"
    if [ "$have" = "$want" ]; then
        log "$image is up to date"
        return 0
    fi
    log "building $image"
    local old
    old="$(docker image inspect --format '{{ .Id }}' "$image" 2>/dev/null || true)"
    # The classic builder: the Engine may be older than BuildKit's API and no buildx plugin is needed.
    DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$want" -t "$image" "$ctx" >/dev/null 2>"$CACHE/build.log" \
        || { cat "$CACHE/build.log" >&2; die "docker build $image failed"; }
    # The image it replaces, unless a container or another tag still uses it.
    if [ -n "$old" ] && [ "$old" != "$(image_id "$image")" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
}

image_id() { docker image inspect --format '{{ .Id }}' "$1"; }

# --- busybox -----------------------------------------------------------------------
bb_x="$(extract busybox-static)"
[ -x "$bb_x/bin/busybox" ] || die "busybox-static has no bin/busybox"
ctx="$CACHE/ctx/busybox"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/var/www"
chmod 1777 "$ctx/rootfs/tmp"
cp "$bb_x/bin/busybox" "$ctx/rootfs/bin/busybox"
for applet in $("$bb_x/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ctx/rootfs/bin/$applet"
done
for needed in sh httpd wget; do
    [ -L "$ctx/rootfs/bin/$needed" ] || die "busybox-static lacks the $needed applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
CMD ["/bin/sh"]
EOF
build rehost-test/busybox:latest "$ctx"
bb_id="$(image_id rehost-test/busybox:latest)"

# --- prometheus --------------------------------------------------------------------
prom_x="$(extract prometheus)"
[ -x "$prom_x/usr/bin/prometheus" ] || die "the prometheus package has no usr/bin/prometheus"
ctx="$CACHE/ctx/prometheus"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc/prometheus" "$ctx/rootfs/prometheus"
cp "$prom_x/usr/bin/prometheus" "$ctx/rootfs/bin/prometheus"
add_libs "$prom_x/usr/bin/prometheus" "$ctx/rootfs"
cat >"$ctx/rootfs/etc/prometheus/prometheus.yml" <<'EOF'
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
EOF
cat >"$ctx/Dockerfile" <<'EOF'
FROM rehost-test/busybox:latest
COPY rootfs/ /
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
EOF
build rehost-test/prometheus:latest "$ctx" "$bb_id"

# --- node exporter -----------------------------------------------------------------
ne_x="$(extract prometheus-node-exporter)"
[ -x "$ne_x/usr/bin/prometheus-node-exporter" ] || die "prometheus-node-exporter has no usr/bin/prometheus-node-exporter"
ctx="$CACHE/ctx/node-exporter"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/bin"
cp "$ne_x/usr/bin/prometheus-node-exporter" "$ctx/rootfs/bin/prometheus-node-exporter"
add_libs "$ne_x/usr/bin/prometheus-node-exporter" "$ctx/rootfs"
cat >"$ctx/Dockerfile" <<'EOF'
FROM rehost-test/busybox:latest
COPY rootfs/ /
EXPOSE 9100
ENTRYPOINT ["/bin/prometheus-node-exporter"]
EOF
build rehost-test/node-exporter:latest "$ctx" "$bb_id"

printf '%s\n' "${IMAGES[@]}"
