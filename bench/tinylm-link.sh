#!/usr/bin/env bash
# TinyLM (22.7 MB gradient) on two test-bed hosts whose links are shaped to RATE: samples/s and
# the exposed communication, (step - compute) / step, per setting. One trainer per host with one
# intra-op thread, so the two "hosts" split this machine's cores as two one-core machines would.
#
#   sudo bench/tinylm-link.sh [RATES] [STEPS] [SETTINGS...]
#   RATES     comma-separated tc rates (default 1gbit,2500mbit)
#   STEPS     steps per run (default 24)
#   SETTINGS  each "name:hocon;hocon;..." (default: the grid below)
# Prints one line per run: rate, setting, samples/s, step/compute/cross-node medians, exposed share,
# and how the hops travelled (TCP between the bed's hosts; shared memory would mean the bed is not one).
# The bed (prefix tlm) is removed on exit, failure included.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dll=$here/examples/TinyLM/bin/Release/net10.0/ActorTrain.TinyLM.dll
[[ -f $dll ]] || { echo "tinylm-link: build first (dotnet build ActorTrain.sln -c Release)" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "tinylm-link: needs root for the network namespaces" >&2; exit 2; }
rates=${1:-1gbit,2500mbit}
steps=${2:-24}
shift $(( $# > 2 ? 2 : $# ))
settings=("$@")
if [[ ${#settings[@]} -eq 0 ]]; then
  settings=(
    "baseline:"
    "overlap:actortrain.sync.overlap-backward=on"
    "bf16:actortrain.sync.compression=bf16"
    "fp16:actortrain.sync.compression=fp16"
    "overlap+bf16:actortrain.sync.overlap-backward=on;actortrain.sync.compression=bf16"
    "overlap+bf16+1MiB:actortrain.sync.overlap-backward=on;actortrain.sync.compression=bf16;actortrain.sync.bucket-size=1MiB"
    "overlap+bf16+16MiB:actortrain.sync.overlap-backward=on;actortrain.sync.compression=bf16;actortrain.sync.bucket-size=16MiB"
  )
fi
export ATB_PREFIX=tlm ATB_OWNER_PID=$$
bed=$here/tools/testbed.sh
work=$(mktemp -d)
cleanup() { "$bed" down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$bed" up 2 --subnet 10.219.0 >/dev/null
# 8 windows per trainer and step, 2 trainers: samples per epoch = steps x 16.
samples=$(( steps * 16 ))
printf '%-10s %-20s %10s %9s %9s %9s %8s  %s\n' rate setting samples/s step_ms comp_ms cross_ms exposed hops
for rate in ${rates//,/ }; do
  "$bed" shape 1 "$rate" >/dev/null; "$bed" shape 2 "$rate" >/dev/null
  for entry in "${settings[@]}"; do
    name=${entry%%:*}; hocon=${entry#*:}
    out=$work/$rate-$name; mkdir -p "$out"
    tr ';' '\n' <<<"$hocon" > "$out/run.conf"
    common=(--epochs 1 --set "actortrain.job.samples-per-epoch=$samples" --out "$out" --no-progress --intra-op-threads 1 --config "$out/run.conf" --min-nodes 2 --seed-node 10.219.0.1:4053)
    "$bed" exec 1 dotnet "$dll" seed --hostname 10.219.0.1 --port 4053 --node-name h1 "${common[@]}" > "$out/seed.log" 2>&1 &
    seed=$!
    "$bed" exec 2 dotnet "$dll" worker --hostname 10.219.0.2 --port 4053 --node-name h2 "${common[@]}" > "$out/worker.log" 2>&1 &
    worker=$!
    if ! wait $seed || ! wait $worker; then
      echo "tinylm-link: $rate $name failed; last lines:" >&2; tail -5 "$out/seed.log" "$out/worker.log" >&2; continue
    fi
    python3 - "$out/run-report.json" "$rate" "$name" "$out/seed.log" "$out/worker.log" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1])); t = r["timings_ms"]
assert r["replicas_equal"], "replicas differ"
sps = r["global_batch"] / (t["step"] / 1000)
# Each node's "Generation 1" line ends with how its ring hops travel.
hops = sorted({m for log in sys.argv[4:] for m in re.findall(r"cross-node (?:over [A-Za-z ]+|to peer.*)$", open(log).read(), re.M)})
print("%-10s %-20s %10.1f %9.1f %9.1f %9.1f %7.1f%%  %s" % (sys.argv[2], sys.argv[3], sps, t["step"], t["compute"], t["cross_node"],
      100 * (t["step"] - t["compute"]) / t["step"], "; ".join(hops) or "?"))
PY
  done
done
