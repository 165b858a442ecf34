#!/usr/bin/env bash
# Ring all-reduce over shaped links: three "hosts" of the namespace test bed (tools/testbed.sh),
# one bench/AllReduce `node` per host, every host's link limited with tc tbf; tcp and akka at
# 16 MiB, in interleaved rounds, then a table of busbw against the link rate.
#
#   bench/akka-link.sh [--rates "1gbit 2500mbit"] [--rounds 3] [--transports "tcp akka"]
#                      [--bytes 16MiB] [--iterations N] [--bin [LABEL=]DIR]... [--no-build]
#                      [--json FILE] [--env "NAME=VALUE ..."]
#
#   --bin DIR     a build to run (a bench/AllReduce/bin/Release/net10.0 folder); give it more than
#                 once (LABEL=DIR) to compare builds, e.g. another worktree's: every round runs every
#                 transport with every build in turn. Default: this tree's, built first
#   --env         variables for every node of the akka runs only (e.g. "DOTNET_GCgen0size=0x4000000");
#                 LABEL:NAME=VALUE sets one for that build's akka runs only (the same DIR may be
#                 given twice under two labels, to compare settings)
#   --json FILE   rank 0's JSON record of every run is appended there (with "link" added)
#
# Needs root (network namespaces, tc). The bed gets its own prefix and subnet (ATB_PREFIX, default
# akl; AKL_SUBNET, default 10.214.0) and is torn down when the script exits, also on failure or
# Ctrl+C. 2.5 Gbit/s is written 2500mbit (tc wants a whole number).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
testbed=$root/tools/testbed.sh

rates="1gbit 2500mbit"
rounds=3
transports="tcp akka"
bytes=16MiB
iterations=""
bins=()
build=1
json=""
akka_env=""

die() { echo "akka-link: $*" >&2; exit 2; }

while (( $# )); do
  case $1 in
    --rates) rates=${2:?--rates needs a value}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --transports) transports=${2:?--transports needs a value}; shift 2 ;;
    --bytes) bytes=${2:?--bytes needs a value}; shift 2 ;;
    --iterations) iterations=${2:?--iterations needs a value}; shift 2 ;;
    --bin) bins+=("${2:?--bin needs a folder}"); shift 2 ;;
    --no-build) build=0; shift ;;
    --json) json=${2:?--json needs a file}; shift 2 ;;
    --env) akka_env=${2?--env needs a value}; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive whole number, got '$rounds'"
[[ -z $iterations || $iterations =~ ^[1-9][0-9]*$ ]] || die "--iterations must be a positive whole number, got '$iterations'"
for t in $transports; do [[ $t == tcp || $t == akka ]] || die "--transports takes tcp and/or akka, got '$t'"; done
for r in $rates; do [[ ${r,,} =~ ^[0-9]+(kbit|mbit|gbit)$ ]] || die "rate '$r' must be a whole number with kbit, mbit or gbit (2.5 Gbit/s: 2500mbit)"; done
for e in $akka_env; do [[ $e =~ ^([A-Za-z0-9._-]+:)?[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || die "--env takes NAME=VALUE or LABEL:NAME=VALUE words, got '$e'"; done
[[ $(id -u) == 0 ]] || die "needs root (network namespaces and tc); run it with sudo"

if (( ${#bins[@]} == 0 )); then
  bins=("$root/bench/AllReduce/bin/Release/net10.0")
  if (( build )); then
    echo "akka-link: building bench/AllReduce (Release)" >&2
    dotnet build "$root/bench/AllReduce" -c Release -v quiet -nologo >/dev/null || die "the build failed: dotnet build $root/bench/AllReduce -c Release"
  fi
fi
labels=(); exes=()
for b in "${bins[@]}"; do
  label=""; dir=$b
  [[ $b == *=* ]] && { label=${b%%=*}; dir=${b#*=}; }
  [[ -x $dir/ActorTrain.Bench.AllReduce ]] || die "no benchmark at $dir/ActorTrain.Bench.AllReduce (build bench/AllReduce first, or give another --bin)"
  [[ -z $label ]] && label=$(( ${#labels[@]} + 1 ))
  [[ $label =~ ^[A-Za-z0-9._-]+$ ]] || die "--bin label '$label' must be letters, digits, '.', '_' or '-'"
  labels+=("$label"); exes+=("$(realpath "$dir")/ActorTrain.Bench.AllReduce")
done
[[ -n $json ]] && json=$(realpath -m "$json")

export ATB_PREFIX=${ATB_PREFIX:-akl}
subnet=${AKL_SUBNET:-10.214.0}
work=$(mktemp -d)
bed_up=0
teardown() {
  local code=$?
  # Nodes still running (a failed or interrupted run) go with their namespaces.
  if (( bed_up )); then "$testbed" down >/dev/null 2>&1 || echo "akka-link: could not remove the test bed; run: ATB_PREFIX=$ATB_PREFIX $testbed down" >&2; fi
  rm -rf "$work"
  exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT TERM

"$testbed" up 3 --subnet "$subnet" >/dev/null
bed_up=1
addr() { echo "$subnet.$1"; }

# Link rate in GB/s (10^9 bytes), the unit busbw is given in.
rate_gbps() {
  local r=${1,,} n unit
  [[ $r =~ ^([0-9]+)(kbit|mbit|gbit)$ ]]; n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
  case $unit in kbit) awk -v n="$n" 'BEGIN{printf "%.6f", n/8e6}' ;; mbit) awk -v n="$n" 'BEGIN{printf "%.6f", n/8e3}' ;; gbit) awk -v n="$n" 'BEGIN{printf "%.6f", n/8}' ;; esac
}

port=29400
# One run: 3 nodes, one per host; sets busbw (GB/s, or FAIL). Not run in a $(...) subshell, so
# that a signal reaches the shell that waits for the nodes.
run_once() {
  local transport=$1 rate=$2 exe=$3 label=$4 out=$work/run.out envs=() pids=() r code=0
  port=$((port + 1))
  if [[ $transport == akka ]]; then
    for e in $akka_env; do
      if [[ $e =~ ^([A-Za-z0-9._-]+):(.*)$ ]]; then [[ ${BASH_REMATCH[1]} == "$label" ]] && envs+=("${BASH_REMATCH[2]}")
      else envs+=("$e"); fi
    done
  fi
  local common=(--nodes 3 --rendezvous "$(addr 1):$port" --bytes "$bytes" --transport "$transport")
  [[ -n $iterations ]] && common+=(--iterations "$iterations")
  for r in 1 2; do
    "$testbed" exec $((r + 1)) env "${envs[@]}" "$exe" node --rank "$r" --bind "$(addr $((r + 1)))" "${common[@]}" \
      >"$work/rank$r.out" 2>&1 &
    pids+=($!)
  done
  # In the background and waited for, so that a signal ends the script at once (bash runs a trap
  # only between foreground commands); the bed's teardown then takes the nodes with it.
  "$testbed" exec 1 env "${envs[@]}" "$exe" node --rank 0 --bind "$(addr 1)" "${common[@]}" --json "$work/run.json" \
    >"$out" 2>&1 &
  wait $! || code=$?
  for r in "${pids[@]}"; do wait "$r" || { local rc=$?; (( code )) || code=$rc; }; done
  if (( code != 0 )) || ! grep -q "^3, " "$out"; then
    echo "akka-link: $transport at $rate (build $label) failed (exit $code):" >&2
    tail -n 5 "$out" "$work"/rank*.out >&2 || true
    busbw=FAIL
    failed=1
    return
  fi
  if [[ -n $json ]]; then
    tail -1 "$work/run.json" | sed "s/^{/{\"link\":\"$rate\",\"build\":\"$label\",\"env\":\"${envs[*]}\",/" >>"$json"
  fi
  busbw=$(grep "^3, " "$out" | tail -1 | awk -F', ' '{print $6}')
}

echo "akka-link: $(uptime | sed 's/^ *//')" >&2
declare -A got
failed=0
for rate in $rates; do
  for h in 1 2 3; do "$testbed" shape "$h" "$rate"; done
  for (( round = 1; round <= rounds; round++ )); do
    for t in $transports; do
      for i in "${!exes[@]}"; do
        run_once "$t" "$rate" "${exes[$i]}" "${labels[$i]}"
        got[$rate,$t,$i]+="$busbw "
        echo "akka-link: $rate $t build ${labels[$i]} round $round: busbw $busbw GB/s" >&2
      done
    done
  done
done
echo "akka-link: $(uptime | sed 's/^ *//')" >&2

multi=$(( ${#exes[@]} > 1 ))
printf '\n%-9s %-8s %-16s %-32s %-8s %s\n' link "GB/s" transport "busbw GB/s per round" median "x link"
for rate in $rates; do
  link=$(rate_gbps "$rate")
  for t in $transports; do
    for i in "${!exes[@]}"; do
      values=${got[$rate,$t,$i]}
      median=$(tr ' ' '\n' <<<"$values" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{v[NR]=$1} END{if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else printf "%.4f\n", (v[NR/2]+v[NR/2+1])/2}')
      ratio=$([[ $median == - ]] && echo - || awk -v m="$median" -v l="$link" 'BEGIN{printf "%.2f", m/l}')
      name=$t; (( multi )) && name="$t@${labels[$i]}"
      printf '%-9s %-8s %-16s %-32s %-8s %s\n' "$rate" "$link" "$name" "$values" "$median" "$ratio"
    done
  done
done
(( failed == 0 )) || { echo "akka-link: some runs failed (FAIL above)" >&2; exit 1; }
