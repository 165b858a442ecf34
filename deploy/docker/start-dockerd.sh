#!/usr/bin/env bash
# Starts a Docker daemon that leaves this machine's networking alone, for the container test
# (tests/Integration.Tests/ContainerTests.cs) and for building the image by hand.
#
#   deploy/docker/start-dockerd.sh            start one unless a daemon already answers
#   deploy/docker/start-dockerd.sh --install  the same, installing Debian's docker.io first if dockerd is missing
#                                             (and debootstrap, which make-base-image.sh needs)
#   deploy/docker/start-dockerd.sh --stop     stop the daemon this script started (no-op otherwise)
#   deploy/docker/start-dockerd.sh --check    exit 0 when a daemon answers, 1 otherwise
#
# The daemon runs without iptables rules, IP forwarding, masquerading or a bridge
# (--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none).
# Docker's defaults set the iptables FORWARD policy to DROP and make a docker0 bridge, which
# breaks the namespace test bed (tools/testbed.sh); with these flags containers can use only
# `--network host` (or none), which is all ActorTrain's images need. Root only.
# Environment: ACTORTRAIN_DOCKERD_LOG (default /var/log/actortrain-dockerd.log),
# ACTORTRAIN_DOCKERD_TIMEOUT (seconds to wait for the daemon, default 60).
set -euo pipefail

state_dir=/run/actortrain-dockerd
pid_file=$state_dir/dockerd.pid
log=${ACTORTRAIN_DOCKERD_LOG:-/var/log/actortrain-dockerd.log}
timeout=${ACTORTRAIN_DOCKERD_TIMEOUT:-60}

die() { echo "start-dockerd: $*" >&2; exit 1; }
answers() { docker info >/dev/null 2>&1; }

mode=start
case "${1:-}" in
  "") ;;
  --install) mode=install ;;
  --stop) mode=stop ;;
  --check) mode=check ;;
  *) die "unknown argument '$1' (expected --install, --stop or --check)" ;;
esac

command -v docker >/dev/null || die "no docker client on PATH"

if [[ $mode == check ]]; then
  answers && { echo "start-dockerd: a Docker daemon answers"; exit 0; }
  echo "start-dockerd: no Docker daemon answers" >&2; exit 1
fi

[[ $(id -u) == 0 ]] || die "must run as root (dockerd needs it); running as uid $(id -u)"

if [[ $mode == stop ]]; then
  if [[ ! -f $pid_file ]]; then echo "start-dockerd: no daemon started by this script"; exit 0; fi
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) did not stop within 30 s"
  fi
  rm -f "$pid_file"
  echo "start-dockerd: stopped dockerd (pid $pid)"
  exit 0
fi

if [[ $mode == install ]]; then
  missing=()
  command -v dockerd >/dev/null || answers || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "no apt-get to install ${missing[*]} with"
    echo "start-dockerd: installing Debian's ${missing[*]}"
    # Package scripts must not start a daemon with default flags: policy-rc.d says no while installing.
    had_policy=0; [[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
    [[ $had_policy == 1 ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    status=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } || status=$?
    [[ $had_policy == 1 ]] || rm -f /usr/sbin/policy-rc.d
    [[ $status == 0 ]] || die "apt-get install ${missing[*]} failed (exit $status)"
  fi
fi

if answers; then
  echo "start-dockerd: a Docker daemon already answers; leaving it as it is"
  exit 0
fi
command -v dockerd >/dev/null || die "dockerd is not installed (run with --install, or: apt-get install docker.io)"

mkdir -p "$state_dir"
nohup dockerd \
  --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
  --pidfile "$state_dir/dockerd.self.pid" \
  >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$pid_file"

for _ in $(seq 1 "$timeout"); do
  if answers; then
    echo "start-dockerd: dockerd (pid $pid) answers; storage driver $(docker info --format '{{.Driver}}'); log $log"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; die "dockerd exited at start; the end of $log:
$(tail -n 20 "$log")"; }
  sleep 1
done
kill -TERM "$pid" 2>/dev/null || true
rm -f "$pid_file"
die "dockerd did not answer within $timeout s; the end of $log:
$(tail -n 20 "$log")"
