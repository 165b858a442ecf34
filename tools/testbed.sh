#!/usr/bin/env bash
# A test bed of network namespaces: N "hosts" on one machine, each with its own network stack
# and address, joined by one bridge. For trying partitions and link rates by hand, and used by
# the integration tests (tests/Integration.Tests/TestBed). Needs root and iproute2 (ip, tc).
#
#   testbed.sh up N [--subnet 10.213.0]   make hosts PREFIX-h1..PREFIX-hN at SUBNET.1..N/24;
#                                         the bridge PREFIX-br in the root namespace gets SUBNET.254
#   testbed.sh down                       remove everything `up` made (idempotent)
#   testbed.sh cut HOST | heal HOST       take the host's link down / up (HOST: 2 or atb-h2)
#   testbed.sh shape HOST RATE            limit the host's link to RATE each way (tbf; e.g. 1gbit, 100mbit)
#   testbed.sh unshape HOST               remove the limit
#   testbed.sh exec HOST CMD...           run CMD inside the host (ip netns exec)
#   testbed.sh status                     hosts, addresses, link states, qdiscs, netfilter state
#
# Environment: ATB_PREFIX (default atb; letters and digits, at most 9), ATB_STATE_DIR (default
# /run/actortrain-testbed), ATB_OWNER_PID (recorded for the test fixture's leftover cleanup),
# ATB_FIX_NETFILTER (default 1, see below).
#
# The hosts get no default route: they reach each other, the bridge address and their own
# loopback, nothing else.
#
# Docker: a Docker daemon started with default flags sets the iptables FORWARD policy to DROP
# and turns bridge netfilter on (net.bridge.bridge-nf-call-iptables=1), and both stay after it
# stops; then all bridged traffic between the hosts is dropped. `up` probes every host from
# host 1 and, when packets are dropped, says why. With ATB_FIX_NETFILTER=1 (the default) and
# bridge netfilter on, it sets net.bridge.bridge-nf-call-iptables=0 (bridged frames then skip
# iptables; iptables is not needed for that, and is often not installed) and probes again;
# `down` of the last bed that needed it puts the original value back. Until then the setting
# applies to every bridge of the root namespace (e.g. Docker's own, if one runs).
set -euo pipefail

PREFIX=${ATB_PREFIX:-atb}
STATE_ROOT=${ATB_STATE_DIR:-/run/actortrain-testbed}
STATE=$STATE_ROOT/$PREFIX
BR=$PREFIX-br
NF_SYSCTL=/proc/sys/net/bridge/bridge-nf-call-iptables

die() { echo "testbed: $*" >&2; exit 1; }
note() { echo "testbed: $*" >&2; }

[[ $PREFIX =~ ^[a-z][a-z0-9]{0,8}$ ]] || die "ATB_PREFIX '$PREFIX' must be 1-9 lower-case letters/digits starting with a letter (interface names are limited to 15 characters)"

need_root() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces, links and qdiscs)"
  command -v ip >/dev/null || die "iproute2's ip is missing"
}

ns_of() { echo "$PREFIX-h$1"; }
veth_of() { echo "$PREFIX-h$1-v"; }   # the root namespace's end; the host's end is eth0

# HOST as a number (2) or a name (atb-h2) -> number, checked against the bed.
host_num() {
  local h=$1
  [[ $h =~ ^$PREFIX-h([0-9]+)$ ]] && h=${BASH_REMATCH[1]}
  [[ $h =~ ^[0-9]+$ ]] || die "no such host '$1' (give 2 or $PREFIX-h2)"
  ip netns list | awk '{print $1}' | grep -qx "$(ns_of "$h")" || die "no host $(ns_of "$h"); is the bed up (ATB_PREFIX=$PREFIX)?"
  echo "$h"
}

subnet_of_state() { cat "$STATE/subnet" 2>/dev/null || echo "?"; }

ip2int() { local IFS=.; set -- $1; echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }

# Fails when SUBNET.0/24 overlaps a route or address the machine already has.
check_subnet_free() {
  local subnet=$1 net len rnet mask
  net=$(ip2int "$subnet.0")
  while read -r dst _; do
    [[ $dst == default ]] && continue
    [[ $dst == */* ]] || dst=$dst/32
    rnet=$(ip2int "${dst%/*}"); len=${dst#*/}
    (( len > 24 )) && len=24
    mask=$(( len == 0 ? 0 : (0xffffffff << (32 - len)) & 0xffffffff ))
    if (( (rnet & mask) == (net & mask) )); then
      die "subnet $subnet.0/24 overlaps the route $dst already on this machine; choose another with --subnet"
    fi
  done < <(ip -4 route show table all type unicast 2>/dev/null | grep -v ' table local' || true)
}

# probe FROM_NS ADDR: connect to a closed port. "Connection refused" means the SYN went there
# and the RST came back: reachable. Prints ok | dropped | unreachable:<message>.
probe() {
  local from=$1 addr=$2 out rc
  out=$(ip netns exec "$from" timeout 2 bash -c "exec 3<>/dev/tcp/$addr/9" 2>&1) && rc=0 || rc=$?
  if [[ $rc == 0 || $out == *"refused"* ]]; then echo ok
  elif [[ $rc == 124 ]]; then echo dropped
  else echo "unreachable:${out##*: }"; fi
}

probe_all() {
  local n=$1 subnet=$2 i r bad=""
  for (( i = 2; i <= n; i++ )); do
    r=$(probe "$(ns_of 1)" "$subnet.$i")
    [[ $r == ok ]] || bad+=" $(ns_of "$i")($subnet.$i):$r"
  done
  if (( n == 1 )); then
    r=$(probe "$(ns_of 1)" "$subnet.254")
    [[ $r == ok ]] || bad+=" bridge($subnet.254):$r"
  fi
  echo "${bad# }"
}

# The iptables FORWARD policy (ACCEPT, DROP), empty when it cannot be read.
forward_policy() {
  if command -v iptables >/dev/null; then
    iptables -S FORWARD 2>/dev/null | awk '$1=="-P"{print $3}' || true
  fi
}

forward_policy_text() { local p; p=$(forward_policy); echo "${p:-unknown (no iptables here)}"; }

# Shared bookkeeping for the bridge-netfilter sysctl: the original value is kept once in
# $STATE_ROOT/nf.orig; every bed that relies on the change has $STATE/nf-user; the last `down`
# restores the value.
nf_lock() { exec 9>"$STATE_ROOT/.lock"; flock 9; }
nf_unlock() { flock -u 9; exec 9>&-; }

nf_disable() {
  nf_lock
  [[ -f $STATE_ROOT/nf.orig ]] || cat "$NF_SYSCTL" > "$STATE_ROOT/nf.orig"
  echo 0 > "$NF_SYSCTL"
  touch "$STATE/nf-user"
  nf_unlock
}

nf_release() {
  [[ -f $STATE/nf-user ]] || return 0
  nf_lock
  rm -f "$STATE/nf-user"
  if [[ -f $STATE_ROOT/nf.orig ]] && ! compgen -G "$STATE_ROOT/*/nf-user" >/dev/null; then
    cat "$STATE_ROOT/nf.orig" > "$NF_SYSCTL" 2>/dev/null || note "could not restore $NF_SYSCTL"
    rm -f "$STATE_ROOT/nf.orig"
  fi
  nf_unlock
}

cmd_up() {
  need_root
  command -v tc >/dev/null || die "iproute2's tc is missing"
  local n=${1:-} subnet=10.213.0 i ns veth
  shift || true
  while (( $# )); do
    case $1 in
      --subnet) subnet=${2:-}; shift 2 || die "--subnet needs a value like 10.213.0" ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && (( n >= 1 && n <= 99 )) || die "up N: N must be 1..99"
  [[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "--subnet must be three octets, e.g. 10.213.0"
  if [[ -d $STATE ]] || ip link show "$BR" >/dev/null 2>&1 || ip netns list | awk '{print $1}' | grep -q "^$PREFIX-h[0-9]*$"; then
    die "a bed with prefix $PREFIX exists already; run 'ATB_PREFIX=$PREFIX $0 down' first"
  fi
  check_subnet_free "$subnet"

  mkdir -p "$STATE"
  echo "$subnet" > "$STATE/subnet"
  echo "$n" > "$STATE/hosts"
  echo "${ATB_OWNER_PID:-}" > "$STATE/owner"
  trap 'note "up failed; removing what it made"; cmd_down >/dev/null 2>&1 || true' ERR

  ip link add "$BR" type bridge
  ip addr add "$subnet.254/24" dev "$BR"
  ip link set "$BR" up
  for (( i = 1; i <= n; i++ )); do
    ns=$(ns_of "$i"); veth=$(veth_of "$i")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BR" up
    ip -n "$ns" addr add "$subnet.$i/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  trap - ERR

  # Another bed's netfilter change must outlive this bed too while it relies on it.
  if [[ -f $STATE_ROOT/nf.orig ]]; then nf_lock; [[ -f $STATE_ROOT/nf.orig ]] && touch "$STATE/nf-user"; nf_unlock; fi

  local bad="" try
  for try in 1 2 3; do
    bad=$(probe_all "$n" "$subnet")
    [[ -z $bad ]] && break
    sleep 1
  done
  if [[ -n $bad ]]; then
    local nf policy why=""
    nf=$(cat "$NF_SYSCTL" 2>/dev/null || echo absent)
    policy=$(forward_policy)
    [[ $nf == 1 ]] && why+=" bridge netfilter is on (net.bridge.bridge-nf-call-iptables=1), so bridged packets pass iptables' FORWARD chain;"
    [[ $policy == DROP ]] && why+=" the iptables FORWARD policy is DROP (Docker's daemon leaves it so);"
    [[ -z $policy && $nf == 1 ]] && why+=" iptables is not installed here, so its FORWARD policy cannot be read (Docker's daemon sets it to DROP);"
    if [[ $nf == 1 && ${ATB_FIX_NETFILTER:-1} == 1 ]]; then
      note "packets between the hosts are dropped:${why% ;} Setting net.bridge.bridge-nf-call-iptables=0 until the last bed is down."
      nf_disable
      bad=$(probe_all "$n" "$subnet")
    fi
  fi
  if [[ -n $bad ]]; then
    local nf; nf=$(cat "$NF_SYSCTL" 2>/dev/null || echo absent)
    local msg="host 1 cannot reach: $bad. net.bridge.bridge-nf-call-iptables=$nf, iptables FORWARD policy=$(forward_policy_text)"
    [[ $(forward_policy) == DROP ]] && msg+=" (Docker's daemon sets it to DROP; start it with --iptables=false --bridge=none)"
    if [[ $nf == 1 ]]; then msg+="; bridge netfilter is on: ATB_FIX_NETFILTER=1 sets it off for the bed"
    else msg+="; bridge netfilter is off, so something else drops (bridge port settings, nftables rules of the root namespace)"; fi
    cmd_down >/dev/null 2>&1 || true
    die "$msg"
  fi
  for (( i = 1; i <= n; i++ )); do echo "$(ns_of "$i") $subnet.$i"; done
}

cmd_down() {
  need_root
  local ns pid link left=""
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$PREFIX-h[0-9]+$" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$PREFIX-(br|h[0-9]+-v)$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  [[ -d $STATE_ROOT ]] && nf_release
  rm -rf "$STATE"
  # What could not be removed is an error: the next `up` would collide with it.
  left+=$(ip netns list | awk '{print $1}' | grep -E "^$PREFIX-h[0-9]+$" | tr '\n' ' ' || true)
  left+=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$PREFIX-(br|h[0-9]+-v)$" | tr '\n' ' ' || true)
  [[ -z $left ]] || die "could not remove: $left"
}

rate_bits() {
  local r=${1,,} num unit
  [[ $r =~ ^([0-9]+)(bit|kbit|mbit|gbit|tbit)$ ]] || die "RATE must be a number with bit, kbit, mbit, gbit or tbit (e.g. 1gbit), not '$1'"
  num=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
  case $unit in
    bit) echo "$num" ;; kbit) echo $(( num * 1000 )) ;; mbit) echo $(( num * 1000000 )) ;;
    gbit) echo $(( num * 1000000000 )) ;; tbit) echo $(( num * 1000000000000 )) ;;
  esac
}

cmd_shape() {
  need_root
  local h rate bits burst
  h=$(host_num "${1:-}"); rate=${2:-}
  bits=$(rate_bits "$rate")
  # Burst: 10 ms at the rate (a tick's worth at HZ=100), at least 64 KB so a GSO packet fits.
  burst=$(( bits / 8 / 100 )); (( burst < 65536 )) && burst=65536
  tc qdisc replace dev "$(veth_of "$h")" root tbf rate "$rate" burst "$burst" latency 50ms
  ip netns exec "$(ns_of "$h")" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
}

cmd_unshape() {
  need_root
  local h; h=$(host_num "${1:-}")
  tc qdisc del dev "$(veth_of "$h")" root 2>/dev/null || true
  ip netns exec "$(ns_of "$h")" tc qdisc del dev eth0 root 2>/dev/null || true
}

cmd_status() {
  local ns subnet veth
  subnet=$(subnet_of_state)
  echo "bed $PREFIX: subnet $subnet.0/24, bridge $BR $(ip -br link show "$BR" 2>/dev/null | awk '{print $2}' || echo absent)"
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$PREFIX-h[0-9]+$" | sort -V || true); do
    veth=$ns-v
    printf '%-12s %-16s link %-5s %s\n' "$ns" \
      "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')" \
      "$(ip -br link show "$veth" 2>/dev/null | awk '{print $2}')" \
      "$(tc qdisc show dev "$veth" root 2>/dev/null | grep -o 'tbf.*' || echo 'unshaped')"
  done
  echo "net.bridge.bridge-nf-call-iptables=$(cat "$NF_SYSCTL" 2>/dev/null || echo absent)$([[ -f $STATE/nf-user ]] && echo ' (set by the test bed; restored on down)'), iptables FORWARD policy=$(forward_policy_text)"
}

cmd=${1:-}
shift || true
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  cut) need_root; h=$(host_num "${1:-}"); ip link set "$(veth_of "$h")" down ;;
  heal) need_root; h=$(host_num "${1:-}"); ip link set "$(veth_of "$h")" up ;;
  shape) cmd_shape "$@" ;;
  unshape) cmd_unshape "$@" ;;
  exec) need_root; h=$(host_num "${1:-}"); shift; (( $# )) || die "exec HOST CMD..."; exec ip netns exec "$(ns_of "$h")" "$@" ;;
  status) cmd_status ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; [[ -z $cmd || $cmd == -h || $cmd == --help || $cmd == help ]] || exit 2 ;;
esac
