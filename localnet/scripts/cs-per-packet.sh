#!/bin/bash
# Context switches and task-clock per packet of the nodes of one role that a
# running node-cost started: perf stat on all of them for SECS seconds,
# divided by what their /metrics counted in that window: for mix nodes the
# packets forwarded, for gateways the packet events (packets received from
# links, i.e. final hops, plus client packets accepted into layer 1).
# usage: cs-per-packet.sh NODE_COST_PID [SECS] [mix|gateway]
set -eu
nc=$1; secs=${2:-20}; role=${3:-mix}
case "$role" in
  mix) binary=mixnode;;
  gateway) binary=gateway;;
  *) echo "role must be mix or gateway, not $role" >&2; exit 2;;
esac
pids=(); urls=()
for p in $(pgrep -P "$nc"); do
  cmd=$(tr '\0' ' ' < /proc/$p/cmdline)
  case "$cmd" in
    *"$binary run --config"*)
      cfg=$(echo "$cmd" | sed -E 's/.*--config ([^ ]+).*/\1/')
      listen=$(awk '/^\[metrics\]/{m=1;next} /^\[/{m=0} m && /^listen/{gsub(/[" ]/,"");split($0,a,"=");print a[2]}' "$cfg")
      pids+=("$p"); urls+=("http://$listen/metrics");;
  esac
done
[ ${#pids[@]} -gt 0 ] || { echo "no $role node under $nc" >&2; exit 1; }
count() {
  local s=0 v
  for u in "${urls[@]}"; do
    if [ "$role" = mix ]; then
      v=$(curl -s "$u" | awk '/^mixnode_packets_forwarded_total/{print $2}')
    else
      v=$(curl -s "$u" | awk '/^gateway_packets_received_total /{r=$2} /^gateway_client_packets_accepted_total /{c=$2} END{print r+c}')
    fi
    s=$(echo "$s + ${v:-0}" | bc)
  done
  echo "$s"
}
echo "metrics: ${urls[*]}" >&2
n0=$(count)
out=$(perf stat -x, -e context-switches,task-clock -p "$(IFS=,; echo "${pids[*]}")" -- sleep "$secs" 2>&1)
n1=$(count)
cs=$(echo "$out" | awk -F, '$3=="context-switches"{print $1}')
tc=$(echo "$out" | awk -F, '$3=="task-clock"{print $1}')
n=$(echo "$n1 - $n0" | bc)
echo "$role nodes: ${pids[*]}  window ${secs}s  packets $n  context-switches $cs  task-clock ${tc} ms"
echo "cs/packet $(echo "scale=2; $cs / $n" | bc)  task-clock µs/packet $(echo "scale=1; $tc * 1000 / $n" | bc)"
