#!/usr/bin/env bash
# Render the cloud-init user-data of a rehost host.
#
#   cloud-init/render.sh [--gzip] VALUES [OUTPUT]
#
# VALUES is a KEY=VALUE file (see cloud-init/values.example.env for every
# key and what it means). It is read literally, never run by a shell: no
# quotes, no expansion, one value per line. The template
# cloud-init/user-data.tmpl gets exactly the documented ${KEYS} substituted
# (envsubst with an explicit list: every other `$` is left alone), and the
# stack files (images/), /etc/rehost/rehost.yaml (images/stack/rehost.yaml)
# and the systemd units (cloud-init/*.service) are added as write_files
# entries (text files as YAML literal blocks, byte for byte; anything a
# literal block cannot carry exactly as gzip+base64), so the stack in the
# repository is the one deployed.
#
# --gzip writes the whole user-data gzipped (cloud-init recognises gzipped
# user-data): about 14 KiB instead of about 58 KiB, within AWS EC2's limit
# of 16,384 bytes. With --gzip, an output over that limit is an error;
# without it, a warning. `cloud-init schema` checks the plain rendering.
#
# REHOST_RENDER_IMAGES (environment, default images/ of this repository):
# the folder whose files are deployed to /opt/rehost/images. The VM drill
# sets it to a variant whose stack uses only the test images (no registry
# there); images/stack/rehost.yaml is always the one from this repository.
#
# OUTPUT (default: stdout) holds credentials: it is written with mode 0600,
# atomically. Errors name the file, line and key, never a value.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

die() { echo "render: error: $*" >&2; exit 2; }

case "${1:-}" in
    -h|--help|"") awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
                  [ -n "${1:-}" ] && exit 0 || exit 2 ;;
esac
gzip_out=0
if [ "$1" = --gzip ]; then
    gzip_out=1
    shift
fi
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || die "usage: $0 [--gzip] VALUES [OUTPUT]"
# AWS EC2's user-data limit (raw, before base64); Hetzner allows 32 KiB.
limit=16384
images="${REHOST_RENDER_IMAGES:-$root/images}"
[ -d "$images" ] || die "REHOST_RENDER_IMAGES=$images: not a directory"
images="$(cd "$images" && pwd)"
values="$1"
out="${2:-}"
[ -r "$values" ] || die "$values: cannot read"
command -v envsubst >/dev/null 2>&1 || die "envsubst not found (Debian package gettext-base)"

required=(REHOST_HOST REHOST_STORAGE_URL REHOST_S3_ENDPOINT REHOST_CONTENT_URL
          AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY REHOST_AGE_RECIPIENT REHOST_AGE_IDENTITY
          DOMAIN ACME_EMAIL
          GRAFANA_ADMIN_PASSWORD TRAEFIK_DASHBOARD_HTPASSWD
          REHOST_BINARY_URL REHOST_BINARY_SHA256)
declare -A optional=(
    [REHOST_S3_REGION]=us-east-1
    [ACME_CA_SERVER]=https://acme-v02.api.letsencrypt.org/directory
    [PROMETHEUS_RETENTION]=30d
    [REHOST_JOBS_IN]=systemd
)
declare -A val=() where=()
known=" ${required[*]} ${!optional[*]} "

n=0
while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%$'\r'}"
    case "$line" in ''|'#'*) continue ;; esac
    [[ "$line" == *=* ]] || die "$values:$n: expected KEY=VALUE"
    key="${line%%=*}"
    value="${line#*=}"
    [[ "$known" == *" $key "* ]] || die "$values:$n: unknown key $key (known:$known)"
    [ -z "${where[$key]:-}" ] || die "$values:$n: $key given twice (first on line ${where[$key]})"
    # Values land in env files and YAML block scalars: keep them to one
    # plain line. `$` would be expanded by Compose's env_file reader; only
    # the htpasswd line (a file of its own) may carry it.
    case "$value" in
        *[\"\'\\\`]*) die "$values:$n: $key: quotes, backslashes and backticks are not allowed" ;;
    esac
    if [ "$key" != TRAEFIK_DASHBOARD_HTPASSWD ] && [[ "$value" == *'$'* ]]; then
        die "$values:$n: $key: \`\$\` is not allowed"
    fi
    val[$key]="$value"
    where[$key]="$n"
done <"$values"

for key in "${required[@]}"; do
    [ -n "${val[$key]:-}" ] || die "$values: $key is required and missing or empty"
done
for key in "${!optional[@]}"; do
    [ -n "${val[$key]:-}" ] || val[$key]="${optional[$key]}"
done
at() { echo "$values:${where[$1]:-?}: $1"; }
[[ "${val[REHOST_BINARY_SHA256]}" =~ ^[0-9a-f]{64}$ ]] || die "$(at REHOST_BINARY_SHA256): expected 64 lowercase hex digits"
[[ "${val[REHOST_BINARY_URL]}" =~ ^https?://[^[:space:]]+$ ]] || die "$(at REHOST_BINARY_URL): expected an http(s) URL"
[[ "${val[REHOST_STORAGE_URL]}" =~ ^(s3|file)://[^[:space:]]+$ ]] || die "$(at REHOST_STORAGE_URL): expected s3://bucket/prefix"
[[ "${val[REHOST_CONTENT_URL]}" =~ ^(s3|file)://[^[:space:]]+/$ ]] || die "$(at REHOST_CONTENT_URL): expected s3://bucket/prefix/ (with the trailing slash)"
[[ "${val[TRAEFIK_DASHBOARD_HTPASSWD]}" =~ ^[^:[:space:]]+:[^[:space:]]+$ ]] || die "$(at TRAEFIK_DASHBOARD_HTPASSWD): expected one htpasswd line, USER:HASH (htpasswd -nB USER)"
[[ "${val[REHOST_AGE_RECIPIENT]}" =~ ^age1[02-9ac-hj-np-z]{58}$ ]] || die "$(at REHOST_AGE_RECIPIENT): expected an age public key, age1… (age-keygen -y KEYFILE)"
[[ "${val[REHOST_AGE_IDENTITY]}" =~ ^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$ ]] || die "$(at REHOST_AGE_IDENTITY): expected one age secret key, AGE-SECRET-KEY-1… (the last line of what age-keygen writes)"
[[ "${val[DOMAIN]}" =~ ^[A-Za-z0-9.-]+$ ]] || die "$(at DOMAIN): expected a domain name"
case "${val[REHOST_JOBS_IN]}" in
    systemd) val[REHOST_JOBS_REPLICAS]=0 ;;
    compose) val[REHOST_JOBS_REPLICAS]=1 ;;
    *) die "$(at REHOST_JOBS_IN): expected systemd or compose" ;;
esac

# Whether FILE survives a YAML literal block byte for byte: UTF-8 text
# with no control characters but tab and newline, no line of blanks only
# (folded into an empty line), not starting with a blank (it would set the
# indentation), not empty.
literal_ok() {
    [ -s "$1" ] || return 1
    [ -z "$(LC_ALL=C tr -d '\t\n\040-\176\200-\377' <"$1" | head -c1)" ] || return 1
    iconv -f UTF-8 -t UTF-8 "$1" >/dev/null 2>&1 || return 1
    ! LC_ALL=C grep -qE '^[[:blank:]]+$' "$1" || return 1
    case "$(head -c1 "$1")" in ' '|"$(printf '\t')") return 1 ;; esac
}

# One write_files entry. Text as a literal block, whose chomping indicator
# keeps the file's final newlines exactly (`|-` none, `|` one, `|+` more);
# anything else gzip+base64 (deterministic: gzip -n). Literal text keeps the
# whole user-data compressible (--gzip).
entry() { # SOURCE DEST MODE
    printf '  - path: %s\n    owner: root:root\n    permissions: "%s"\n' "$2" "$3"
    if literal_ok "$1"; then
        local chomp='' tail
        tail="$(tail -c2 "$1" | od -An -c | tr -d ' ')"
        case "$tail" in
            *'\n\n') chomp=+ ;;
            *'\n') chomp='' ;;
            *) chomp=- ;;
        esac
        printf '    content: |%s\n' "$chomp"
        # Empty lines stay empty (they are empty lines of the block).
        sed '/./s/^/      /' "$1"
        # GNU sed keeps a missing final newline missing; `|-` drops the one
        # the YAML needs here.
        if [ "$chomp" = - ]; then echo; fi
    else
        printf '    encoding: gz+b64\n    content: %s\n' "$(gzip -9 -n -c "$1" | base64 -w0)"
    fi
}

generated() {
    echo "  # Generated by cloud-init/render.sh from the repository."
    entry "$root/images/stack/rehost.yaml" /etc/rehost/rehost.yaml 0644
    local f rel mode
    while IFS= read -r f; do
        rel="${f#"$images"/}"
        mode=0644
        [ -x "$f" ] && mode=0755
        entry "$f" "/opt/rehost/images/$rel" "$mode"
    done < <(find "$images" -type f \
                ! -path "$images/stack/stack.env" \
                ! -path "$images/stack/rehost.yaml" \
                ! -path "$images/prometheus/tests/*" | LC_ALL=C sort)
    entry "$root/scripts/rehost-image.sh" /opt/rehost/scripts/rehost-image.sh 0755
    for f in "$here"/*.service; do
        entry "$f" "/etc/systemd/system/$(basename "$f")" 0644
    done
}

vars=(${required[*]} ${!optional[*]} REHOST_JOBS_REPLICAS)
list="$(printf '${%s} ' "${vars[@]}")"
marker='  # @REHOST_GENERATED_FILES@'
grep -qxF "$marker (render.sh: the stack, rehost.yaml, the units)" "$here/user-data.tmpl" \
    || die "$here/user-data.tmpl: marker line \"$marker\" not found"
files="$(generated)"

render() {
    # envsubst reads the values from its environment: give it those only.
    local envs=()
    for key in "${vars[@]}"; do envs+=("$key=${val[$key]}"); done
    env -i "${envs[@]}" "$(command -v envsubst)" "$list" <"$here/user-data.tmpl" |
        while IFS= read -r line; do
            if [[ "$line" == "$marker"* ]]; then
                printf '%s\n' "$files"
            else
                printf '%s\n' "$line"
            fi
        done
}

deliver() {
    if [ "$gzip_out" = 1 ]; then
        render | gzip -9 -n
    else
        render
    fi
}

umask 077
if [ -n "$out" ]; then
    tmp="$(mktemp "$(dirname "$out")/.$(basename "$out").XXXXXXXX")"
else
    tmp="$(mktemp)"
fi
trap 'rm -f "$tmp"' EXIT
deliver >"$tmp"
size="$(wc -c <"$tmp")"
if [ "$size" -gt "$limit" ]; then
    if [ "$gzip_out" = 1 ]; then
        die "the gzipped user-data is $size bytes, over AWS EC2's limit of $limit"
    fi
    echo "render: warning: the user-data is $size bytes, over AWS EC2's limit of $limit: deliver it with --gzip" >&2
fi
if [ -z "$out" ]; then
    cat "$tmp"
else
    sync "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$out"
    trap - EXIT
fi
