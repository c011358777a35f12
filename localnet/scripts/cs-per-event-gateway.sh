#!/bin/bash
# Context switches and task-clock per packet event of the gateways a running
# node-cost started: perf stat on all of them for SECS seconds, divided by
# the packet events their /metrics counted in that window (packets received
# from links, i.e. final hops, plus client packets accepted into layer 1).
# usage: cs-per-event-gateway.sh NODE_COST_PID [SECS]
set -eu
nc=$1; secs=${2:-20}
pids=(); urls=()
for p in $(pgrep -P "$nc"); do
  cmd=$(tr '\0' ' ' < /proc/$p/cmdline)
  case "$cmd" in
    *gateway\ run\ --config*)
      cfg=$(echo "$cmd" | sed -E 's/.*--config ([^ ]+).*/\1/')
      listen=$(awk '/^\[metrics\]/{m=1;next} /^\[/{m=0} m && /^listen/{gsub(/[" ]/,"");split($0,a,"=");print a[2]}' "$cfg")
      pids+=("$p"); urls+=("http://$listen/metrics");;
  esac
done
[ ${#pids[@]} -gt 0 ] || { echo "no gateway under $nc" >&2; exit 1; }
ev() { local s=0; for u in "${urls[@]}"; do v=$(curl -s "$u" | awk '/^gateway_packets_received_total /{r=$2} /^gateway_client_packets_accepted_total /{c=$2} END{print r+c}'); s=$(echo "$s + ${v:-0}" | bc); done; echo "$s"; }
echo "metrics: ${urls[*]}" >&2
e0=$(ev)
out=$(perf stat -x, -e context-switches,task-clock -p "$(IFS=,; echo "${pids[*]}")" -- sleep "$secs" 2>&1)
e1=$(ev)
cs=$(echo "$out" | awk -F, '$3=="context-switches"{print $1}')
tc=$(echo "$out" | awk -F, '$3=="task-clock"{print $1}')
n=$(echo "$e1 - $e0" | bc)
echo "gateways: ${pids[*]}  window ${secs}s  events $n  context-switches $cs  task-clock ${tc} ms"
echo "cs/event $(echo "scale=2; $cs / $n" | bc)  task-clock µs/event $(echo "scale=1; $tc * 1000 / $n" | bc)"
