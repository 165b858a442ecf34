#!/usr/bin/env bash
# Memory over a long training run: starts `local --nodes N` on the example and scrapes every
# node's metrics endpoint every few seconds, printing per node and sample: steps completed,
# resident set size, managed heap and GC collections per generation (the actortrain_process_*,
# actortrain_managed_heap_bytes and actortrain_gc_collections metrics).
# Usage: bench/steady-training.sh [NODES=2] [EPOCHS=15] [INTERVAL_S=3] [CONFIG.conf]   (build examples/Mnist -c Release first)
set -euo pipefail
nodes=${1:-2}; epochs=${2:-15}; interval=${3:-3}; config=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
dll="$root/examples/Mnist/bin/Release/net10.0/ActorTrain.Mnist.dll"
[[ -f $dll ]] || { echo "build first: dotnet build examples/Mnist -c Release" >&2; exit 2; }
out=$(mktemp -d)
log="$out/local.log"
dotnet "$dll" local --nodes "$nodes" --epochs "$epochs" --out "$out" --no-progress ${config:+--config "$config"} > "$log" 2>&1 &
launcher=$!
trap 'kill $launcher 2>/dev/null || true' EXIT

urls=()
for _ in $(seq 1 120); do
  # "[nodeK] metrics at URL", in node order
  mapfile -t urls < <(grep -o '^\[node[0-9]*\] metrics at http[^ ]*' "$log" | sed 's/^\[node//; s/\] metrics at / /' | sort -n | awk '{print $2}' || true)
  (( ${#urls[@]} >= nodes )) && break
  sleep 1
done
(( ${#urls[@]} >= nodes )) || { echo "the nodes did not print their metrics URLs:" >&2; tail -20 "$log" >&2; exit 1; }

# node0 is the seed (coordinator, rank 0: checkpoints, evaluation, model.pth), node1.. the workers.
printf '%-6s %-8s %8s %9s %9s %6s %6s %6s\n' node elapsed steps rss_MiB heap_MiB gen0 gen1 gen2
start=$SECONDS
while kill -0 $launcher 2>/dev/null; do
  for i in "${!urls[@]}"; do
    text=$(curl -s --max-time 2 "${urls[$i]}" || true)
    [[ -n $text ]] || continue
    awk -v node="node$i" -v t=$((SECONDS - start)) '
      /^actortrain_steps_completed_total/ {steps=$NF}
      /^actortrain_process_resident_bytes/ {rss=$NF}
      /^actortrain_managed_heap_bytes/ {heap=$NF}
      /^actortrain_gc_collections\{.*generation="0"/ {g0=$NF}
      /^actortrain_gc_collections\{.*generation="1"/ {g1=$NF}
      /^actortrain_gc_collections\{.*generation="2"/ {g2=$NF}
      END {printf "%-6s %-8s %8d %9.1f %9.1f %6d %6d %6d\n", node, t"s", steps, rss/1048576, heap/1048576, g0, g1, g2}' <<< "$text"
  done
  sleep "$interval"
done
wait $launcher || { echo "the run failed:" >&2; tail -20 "$log" >&2; exit 1; }
grep -E 'Run complete' "$log" || true
echo "report: $out/run-report.json"
