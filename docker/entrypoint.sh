#!/bin/sh
# The entrypoint of the mixnet image: `mixnet-entrypoint ROLE [ARGS...]`.
#
# On a container's first start it writes the node's keys and its commented
# config into /var/lib/mixnet/data (a named volume), with the binary's own
# `init`; on every later start it finds them there and only runs the node,
# so a restarted container keeps its identity, replay journal and mailbox.
#
# Roles:
#   directory   the directory authority; publishes its public key in
#               /var/lib/mixnet/shared/directory.pub for the other containers
#   mixnode     a mix node
#   gateway     a gateway
#   load ...    `mixnet-load` with the directory of this network (demo, chaos)
#   client ...  `mixnet-client` as is
#
# Settings (environment):
#   MIXNET_PUBLIC_IP      the address other containers reach this one at
#                         (nodes; written into the config at every start)
#   MIXNET_DIRECTORY      the directory's URL (nodes, load)
#   MIXNET_DIRECTORY_KEY  the directory's public key; when empty, read from
#                         /var/lib/mixnet/shared/directory.pub (compose)
#   MIXNET_INIT_ONLY=1    write keys and config, then exit (an init container)
#   MIXNET_REFRESH_MS     how often nodes fetch the topology (default 30000)
#   MIXNET_EPOCH_SECS, MIXNET_MEAN_DELAY_MS, MIXNET_LAMBDA_P, MIXNET_LAMBDA_L,
#   MIXNET_LAMBDA_M       the network's parameters (directory, first start only)
set -eu

role=${1:-}
[ -n "$role" ] || { echo "mixnet-entrypoint: no role given (directory, mixnode, gateway, load, client)" >&2; exit 2; }
shift

data=/var/lib/mixnet/data
shared=/var/lib/mixnet/shared
key_file=$shared/directory.pub

fail() {
    echo "mixnet-entrypoint: $*" >&2
    exit 1
}

# Replaces the line matching $2 in file $1 by $3; fails if no line matched.
set_line() {
    grep -q "$2" "$1" || fail "$1: no line matches '$2'"
    sed -i "s|$2|$3|" "$1"
}

# The directory's public key: from the environment, or (compose) waits
# 60 s at most for the file the directory container writes.
directory_key() {
    if [ -n "${MIXNET_DIRECTORY_KEY:-}" ]; then
        echo "$MIXNET_DIRECTORY_KEY"
        return
    fi
    i=0
    while [ ! -s "$key_file" ]; do
        i=$((i + 1))
        [ "$i" -le 120 ] || fail "$key_file: the directory's key did not appear within 60 s"
        sleep 0.5
    done
    cat "$key_file"
}

case "$role" in
directory)
    config=$data/directory.toml
    if [ ! -f "$config" ]; then
        directory init --dir "$data" --listen 0.0.0.0:8080 \
            --epoch-length-secs "${MIXNET_EPOCH_SECS:-3600}" >/dev/null
        set_line "$config" '^mean_delay_ms = .*' "mean_delay_ms = ${MIXNET_MEAN_DELAY_MS:-50}"
        set_line "$config" '^lambda_p = .*' "lambda_p = ${MIXNET_LAMBDA_P:-10.0}"
        set_line "$config" '^lambda_l = .*' "lambda_l = ${MIXNET_LAMBDA_L:-2.0}"
        set_line "$config" '^lambda_m = .*' "lambda_m = ${MIXNET_LAMBDA_M:-2.0}"
        echo "mixnet-entrypoint: wrote $config"
    fi
    [ "${MIXNET_INIT_ONLY:-}" != 1 ] || exit 0
    directory id --config "$config" >"$key_file.new"
    mv "$key_file.new" "$key_file"
    exec directory run --config "$config" "$@"
    ;;
mixnode | gateway)
    config=$data/config.toml
    if [ ! -f "$config" ]; then
        : "${MIXNET_PUBLIC_IP:?MIXNET_PUBLIC_IP: the address other containers reach this node at}"
        key=$(directory_key)
        if [ "$role" = gateway ]; then
            set -- --clients 0.0.0.0:1790 "$@"
        fi
        "$role" init --dir "$data" --listen 0.0.0.0:1789 --metrics 0.0.0.0:9100 \
            --directory "${MIXNET_DIRECTORY:?MIXNET_DIRECTORY: the directory URL}" \
            --directory-key "$key" "$@" >/dev/null
        set_line "$config" '^refresh_ms = .*' "refresh_ms = ${MIXNET_REFRESH_MS:-30000}"
        echo "mixnet-entrypoint: wrote $config"
    fi
    # The address to announce, at every start: a pod may come back under another.
    if [ -n "${MIXNET_PUBLIC_IP:-}" ]; then
        set_line "$config" '^#* *public_address = "[^"]*:1789"' "public_address = \"$MIXNET_PUBLIC_IP:1789\""
        if [ "$role" = gateway ]; then
            set_line "$config" '^#* *public_address = "[^"]*:1790"' "public_address = \"$MIXNET_PUBLIC_IP:1790\""
        fi
    fi
    [ "${MIXNET_INIT_ONLY:-}" != 1 ] || exit 0
    exec "$role" run --config "$config"
    ;;
load)
    key=$(directory_key)
    exec mixnet-load --directory "${MIXNET_DIRECTORY:?MIXNET_DIRECTORY: the directory URL}" \
        --directory-key "$key" "$@"
    ;;
client)
    exec mixnet-client "$@"
    ;;
*)
    fail "unknown role '$role' (directory, mixnode, gateway, load, client)"
    ;;
esac
