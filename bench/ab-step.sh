#!/usr/bin/env bash
# Interleaved A/B of the example's step time: runs `local --nodes N` with build A, then build B,
# ROUNDS times, and prints each run's median step, compute and cross-node time and test accuracy
# (from run-report.json), then the median over the rounds of each build and the ratio B/A.
# Machines are noisy: the two builds alternate so that both see the same drift.
# Usage: bench/ab-step.sh DLL_A DLL_B [ROUNDS=3] [NODES=2] [EPOCHS=10]
#   e.g. bench/ab-step.sh /work/old/examples/Mnist/bin/Release/net10.0/ActorTrain.Mnist.dll \
#                         examples/Mnist/bin/Release/net10.0/ActorTrain.Mnist.dll 3
set -euo pipefail
a=${1:?DLL of build A}; b=${2:?DLL of build B}; rounds=${3:-3}; nodes=${4:-2}; epochs=${5:-10}
for dll in "$a" "$b"; do [[ -f $dll ]] || { echo "no such program: $dll" >&2; exit 2; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { # build-label dll round
  local out="$work/$1-$3"
  if ! dotnet "$2" local --nodes "$nodes" --epochs "$epochs" --out "$out" --no-progress > "$out.log" 2>&1; then
    echo "run $1 round $3 failed:" >&2; tail -20 "$out.log" >&2; exit 1
  fi
  python3 - "$out/run-report.json" "$1" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings_ms"]
print(f'{sys.argv[2]} round {sys.argv[3]}: step {t["step"]:.2f} ms, compute {t["compute"]:.2f} ms, cross {t["cross_node"]:.2f} ms, '
      f'accuracy {r.get("test_accuracy", float("nan")):.4f}, equal {r["replicas_equal"]}')
PY
}
for i in $(seq 1 "$rounds"); do run A "$a" "$i"; run B "$b" "$i"; done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys, os
work, rounds = sys.argv[1], int(sys.argv[2])
def med(label, key):
    return statistics.median(json.load(open(os.path.join(work, f'{label}-{i}', 'run-report.json')))["timings_ms"][key] for i in range(1, rounds + 1))
for key in ("step", "compute", "cross_node"):
    a, b = med("A", key), med("B", key)
    print(f'median {key}: A {a:.2f} ms, B {b:.2f} ms, B/A {b / a:.3f}')
PY
