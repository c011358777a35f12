#!/usr/bin/env bash
# Builds the images of the container network from this checkout, with no
# registry: each image is `FROM scratch` with our binaries and exactly the
# shared libraries they load (read with ldd), plus a static busybox for the
# entrypoint and health checks.
#
#   mixnet:latest             directory, mixnode, gateway, mixnet-client,
#                             mixnet-load, nft (for the chaos tests), the
#                             entrypoint docker/entrypoint.sh
#   mixnet-prometheus:latest  Debian's Prometheus with docker/prometheus/
#
# Usage: docker/build-images.sh
#   PROFILE=release (default) or debug   which cargo profile's binaries
#   NO_BUILD=1                           use the binaries already built
#   CARGO_TARGET_DIR                     where cargo puts them (default target/)
# Needs: cargo, docker, ldd, busybox-static and prometheus (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "build-images: $*" >&2
    exit 1
}

profile=${PROFILE:-release}
case "$profile" in
release) cargo_profile=(--release) ;;
debug) cargo_profile=() ;;
*) fail "PROFILE=$profile: release or debug" ;;
esac
target=${CARGO_TARGET_DIR:-target}/$profile

command -v docker >/dev/null || fail "docker is not installed"
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"
busybox=$(command -v busybox || true)
{ [ -n "$busybox" ] && [[ "$(ldd "$busybox" 2>&1 || true)" == *"not a dynamic"* ]]; } ||
    fail "no static busybox: apt-get install busybox-static"
for tool in prometheus promtool nft; do
    command -v "$tool" >/dev/null || fail "no $tool: apt-get install prometheus nftables"
done

if [ -z "${NO_BUILD:-}" ]; then
    # The same package set as CI's build, so its artifacts are reused.
    cargo build --workspace --bins "${cargo_profile[@]}"
fi
binaries=(directory mixnode gateway mixnet-client mixnet-load)
for b in "${binaries[@]}"; do
    [ -x "$target/$b" ] || fail "$target/$b: not built (cargo build --workspace --bins ${cargo_profile[*]})"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies executable $1 to $2 inside root $3, with every library it loads.
install_with_libs() {
    local src=$1 dest=$2 root=$3
    mkdir -p "$root/$(dirname "$dest")"
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$root/$dest" "$src"
    else
        cp "$src" "$root/$dest"
    fi
    ldd "$src" | grep -oE '/[^ ]+' | while read -r lib; do
        [ -e "$root$lib" ] || cp -L --parents "$lib" "$root/"
    done
}

# A root with busybox (sh, sed, wget...), /etc/passwd, /tmp.
base_root() {
    local root=$1
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/usr/local/bin"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in sh sed grep cat mv cp rm mkdir ls sleep wget test echo hostname ps kill env tr head tail wc date; do
        ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nmixnet:x:10001:10001:mixnet:/var/lib/mixnet:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\nmixnet:x:10001:\n' >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# mixnet:latest
ctx=$work/mixnet
base_root "$ctx/rootfs"
for b in "${binaries[@]}"; do
    install_with_libs "$target/$b" "usr/local/bin/$b" "$ctx/rootfs"
done
install_with_libs "$(command -v nft)" usr/sbin/nft "$ctx/rootfs"
install -m 0755 docker/entrypoint.sh "$ctx/rootfs/usr/local/bin/mixnet-entrypoint"
mkdir -p "$ctx/state/data" "$ctx/state/shared" "$ctx/state/load"
version=$(git describe --always --dirty 2>/dev/null || echo unknown)
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/mixnet/
ENV PATH=/usr/local/bin:/usr/sbin:/bin
USER 10001:10001
WORKDIR /var/lib/mixnet
LABEL org.opencontainers.image.title="mixnet" org.opencontainers.image.version="$version" mixnet.profile="$profile"
ENTRYPOINT ["/usr/local/bin/mixnet-entrypoint"]
EOF
docker build -q -t mixnet:latest "$ctx" >/dev/null
echo "built mixnet:latest ($profile binaries, $(docker image inspect -f '{{.Size}}' mixnet:latest | awk '{printf "%.0f MB", $1/1e6}'))"

# mixnet-prometheus:latest
ctx=$work/prometheus
base_root "$ctx/rootfs"
install_with_libs "$(command -v prometheus)" usr/bin/prometheus "$ctx/rootfs"
install_with_libs "$(command -v promtool)" usr/bin/promtool "$ctx/rootfs"
if [ -d /usr/share/prometheus/web ]; then
    mkdir -p "$ctx/rootfs/usr/share/prometheus"
    cp -r /usr/share/prometheus/web "$ctx/rootfs/usr/share/prometheus/"
fi
mkdir -p "$ctx/rootfs/etc/prometheus" "$ctx/state"
cp docker/prometheus/prometheus.yml docker/prometheus/rules.yml "$ctx/rootfs/etc/prometheus/"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /prometheus/
ENV PATH=/usr/bin:/bin
USER 10001:10001
LABEL org.opencontainers.image.title="mixnet-prometheus" org.opencontainers.image.version="$version"
ENTRYPOINT ["/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090", "--storage.tsdb.retention.time=7d"]
EOF
docker build -q -t mixnet-prometheus:latest "$ctx" >/dev/null
echo "built mixnet-prometheus:latest ($(docker image inspect -f '{{.Size}}' mixnet-prometheus:latest | awk '{printf "%.0f MB", $1/1e6}'))"
