#!/bin/bash
# Instructions per packet of one mix node under real clients.
#
#   localnet/scripts/callgrind-mix.sh [BIN_DIR]
#
# Runs `node-cost` (4 clients at 0.25 × the rates, so that a node under
# valgrind keeps up) with the layer-2 mix node (mix1) under callgrind and the
# others as usual; zeroes the node's counters after a 25 s warm-up, dumps
# them 30 s later, and prints the packets it received in between, its total
# instructions, and those of `Mixer::handle_packet_recorded` (the unwrap) and
# of its own loop cover (`poll_cover`). BIN_DIR holds the release binaries
# (default: target/release of this checkout).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/release}
work=$(mktemp -d /tmp/callgrind-mix.XXXXXX)
for b in directory gateway mixnet-client; do ln -s "$bin/$b" "$work/$b"; done
cat > "$work/mixnode" <<EOS
#!/bin/sh
case "\$*" in
  *run*mix1/config.toml*) exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.%p.out "$bin/mixnode" "\$@" ;;
  *) exec "$bin/mixnode" "\$@" ;;
esac
EOS
chmod +x "$work/mixnode"
MIXNET_BIN_DIR=$work timeout 300 "$bin/node-cost" --clients 4 --messengers 2 \
  --rate-scale 0.25 --warmup-secs 50 --secs 10 > "$work/node-cost.txt" 2>&1 &
pid=
for _ in $(seq 1 60); do
  pid=$(pgrep -f "valgrind.*$work.*mix1/config.toml" | head -1 || true)
  [ -n "$pid" ] && break
  sleep 1
done
[ -n "$pid" ] || { echo "mix1 did not start under valgrind" >&2; exit 1; }
sleep 25
port=$(ss -ltnp | grep "pid=$pid," | awk '{print $4}' | grep -o '[0-9]*$' | head -1)
received() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^mixnode_packets_received_total/ {print $2}'; }
callgrind_control -z "$pid" > /dev/null
r0=$(received)
sleep 30
r1=$(received)
callgrind_control -d "$pid" > /dev/null
sleep 3
wait
out=$(ls -t "$work"/callgrind.*.out.* | head -1)
packets=$((r1 - r0))
echo "packets received in the window: $packets"
callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null \
  | grep -E 'PROGRAM TOTALS|Mixer<C>::handle_packet_recorded \[|Mixer<C>::poll_cover \[' \
  | awk -v n="$packets" '{gsub(",", "", $1); name = $3; sub(/.*:/, "", name); if ($2 == "(100.0%)") name = "total"; printf "%14d  %9.0f per packet  %s\n", $1, $1 / n, name}'
rm -rf "$work"
