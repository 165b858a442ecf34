#!/usr/bin/env bash
# Start and end times of the example: `local --nodes N --epochs E`, each output line stamped on
# arrival, then three figures per run (issue 12's goals in brackets):
#   first_step_s   last node registered -> rank 0's first step done            (<= 1.5 s)
#   epoch_s        each epoch's wall time: epoch 1 from the generation's start (epoch 1 no slower)
#   exit_s         "Run complete" -> every node process has exited               (<= 1 s)
# and a second line that splits each epoch: start -> first step / first -> last step / last step -> done.
# Also: launch -> generation formed, and the whole command's time.
#
#   bench/start-end.sh [DLL] [RUNS] [NODES] [EPOCHS] [-- ARGS...]
#   DLL: the example's ActorTrain.Mnist.dll (default: this tree's Release build)
#   ARGS: more arguments for `local`, e.g. -- --set akka.remote.dot-netty.tcp.batching.enabled=off
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dll=${1:-$here/examples/Mnist/bin/Release/net10.0/ActorTrain.Mnist.dll}
runs=${2:-3}
nodes=${3:-2}
epochs=${4:-3}
extra=()
if (( $# > 4 )); then
  [[ $5 == -- ]] || { echo "start-end: arguments after EPOCHS must follow --" >&2; exit 2; }
  extra=("${@:6}")
fi
[[ -f $dll ]] || { echo "start-end: $dll not found; build first: dotnet build ActorTrain.sln -c Release" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A loss line after every step: the first one marks rank 0's first finished step.
echo 'actortrain.training.log-interval = 1' > "$work/bench.conf"
for run in $(seq 1 "$runs"); do
  out="$work/run$run"
  start=$(date +%s.%N)
  dotnet "$dll" local --nodes "$nodes" --epochs "$epochs" --no-progress --config "$work/bench.conf" --out "$out" "${extra[@]}" 2>&1 \
    | python3 -u -c '
import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin:
    sys.stdout.write("%.3f %s" % (time.time() - t0, line))
' "$start" > "$work/lines$run.txt"
  end=$(date +%s.%N)
  python3 - "$work/lines$run.txt" "$start" "$end" "$run" "$nodes" <<'PY'
import re, sys
path, start, end, run, nodes = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
lines = [(float(l.split(" ", 1)[0]), l.split(" ", 1)[1]) for l in open(path) if re.match(r"^\d+\.\d+ ", l)]
def first(pattern):
    return next((t for t, l in lines if re.search(pattern, l)), None)
def every(pattern):
    return [t for t, l in lines if re.search(pattern, l)]
registered = first(r"registered \(.*\); %d/%d node" % (nodes, nodes))
generation = first(r"Generation 1: world size")
first_step = first(r"\[1,\s+1\] loss:")
epochs = every(r"Epoch \d+/\d+ done")
complete = first(r"Run complete")
ended = first(r"local: all nodes ended")
if None in (registered, generation, first_step, complete, ended) or not epochs:
    print(f"run {run}: a marker line is missing; output in {path}", file=sys.stderr)
    sys.exit(1)
epoch_s = [epochs[0] - generation] + [b - a for a, b in zip(epochs, epochs[1:])]
print(f"run {run}: generation_after_launch_s {generation:.2f}  first_step_s {first_step - registered:.2f}  "
      f"epoch_s {' '.join(f'{e:.2f}' for e in epoch_s)}  exit_s {ended - complete:.2f}  total_s {float(end) - float(start):.2f}")
# Each epoch in three parts: from its start (the generation's, or the previous epoch's end) to its
# first step, its steps, and from its last step to "Epoch e/E done" (evaluation, epoch-end checkpoint).
parts = []
for e, done in enumerate(epochs, start=1):
    steps = [t for t, l in lines if re.search(r"\[%d,\s+\d+\] loss:" % e, l)]
    begin = generation if e == 1 else epochs[e - 2]
    if steps:
        parts.append(f"{e}: {steps[0] - begin:.2f}/{steps[-1] - steps[0]:.2f}/{done - steps[-1]:.2f}")
print(f"run {run}: epoch parts start/steps/end_s  {'  '.join(parts)}")
PY
done
