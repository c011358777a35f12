#!/bin/bash
# Context switches per forwarded packet of the mix nodes a running node-cost
# started: perf stat on all of them for SECS seconds, divided by the packets
# their /metrics counted as forwarded in that window.
# usage: cs-per-packet.sh NODE_COST_PID [SECS]
set -eu
nc=$1; secs=${2:-20}
pids=(); urls=()
for p in $(pgrep -P "$nc"); do
  cmd=$(tr '\0' ' ' < /proc/$p/cmdline)
  case "$cmd" in
    *mixnode\ run\ --config*)
      cfg=$(echo "$cmd" | sed -E 's/.*--config ([^ ]+).*/\1/')
      listen=$(awk '/^\[metrics\]/{m=1;next} /^\[/{m=0} m && /^listen/{gsub(/[" ]/,"");split($0,a,"=");print a[2]}' "$cfg")
      pids+=("$p"); urls+=("http://$listen/metrics");;
  esac
done
[ ${#pids[@]} -gt 0 ] || { echo "no mix node under $nc" >&2; exit 1; }
fwd() { local s=0; for u in "${urls[@]}"; do v=$(curl -s "$u" | awk '/^mixnode_packets_forwarded_total/{print $2}'); s=$(echo "$s + ${v:-0}" | bc); done; echo "$s"; }
echo "metrics: ${urls[*]}" >&2
f0=$(fwd)
out=$(perf stat -x, -e context-switches,task-clock -p "$(IFS=,; echo "${pids[*]}")" -- sleep "$secs" 2>&1)
f1=$(fwd)
cs=$(echo "$out" | awk -F, '$3=="context-switches"{print $1}')
tc=$(echo "$out" | awk -F, '$3=="task-clock"{print $1}')
pk=$(echo "$f1 - $f0" | bc)
echo "mix nodes: ${pids[*]}  window ${secs}s  forwarded $pk  context-switches $cs  task-clock ${tc} ms"
echo "cs/pkt $(echo "scale=2; $cs / $pk" | bc)  task-clock µs/pkt $(echo "scale=1; $tc * 1000 / $pk" | bc)"
