#!/usr/bin/env bash
# Makes the base image of ActorTrain's container image from Debian's packages, for machines
# where no image registry can be reached: debootstrap (minbase, bookworm) into a folder, then
# `docker import`. The image holds what a self-contained .NET program with TorchSharp needs at
# run time beyond the C library: libicu72 (globalization), libssl3 (TLS) and ca-certificates.
# libtorch brings its own OpenMP runtime (libgomp-*.so.1 beside libtorch_cpu.so).
#
#   deploy/docker/make-base-image.sh [--name NAME] [--mirror URL] [--force]
#
# Idempotent: when NAME (default actortrain-base:bookworm) already exists it is kept and the
# script says so; --force makes it again. Calls at the same time wait for each other (flock). Root only (debootstrap chroots). Needs a Docker
# daemon (deploy/docker/start-dockerd.sh) and debootstrap (apt-get install debootstrap).
# Where a registry is reachable, `debian:bookworm-slim` does as well: the Dockerfile installs
# the three packages itself when its base lacks them.
set -euo pipefail

name=actortrain-base:bookworm
mirror=http://deb.debian.org/debian
force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) [[ $# -ge 2 ]] || { echo "make-base-image: --name needs a value" >&2; exit 2; }; name=$2; shift 2 ;;
    --mirror) [[ $# -ge 2 ]] || { echo "make-base-image: --mirror needs a value" >&2; exit 2; }; mirror=$2; shift 2 ;;
    --force) force=1; shift ;;
    *) echo "make-base-image: unknown argument '$1' (expected --name NAME, --mirror URL or --force)" >&2; exit 2 ;;
  esac
done

die() { echo "make-base-image: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (debootstrap chroots into the new tree); running as uid $(id -u)"
command -v docker >/dev/null || die "no docker client on PATH"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start one: deploy/docker/start-dockerd.sh)"

# One maker at a time: a second call (the container test while .ci/run makes the image in the
# background) waits for the first and then finds the image made.
lock=/run/lock/actortrain-base-image.lock
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9

if [[ $force == 0 ]] && docker image inspect "$name" >/dev/null 2>&1; then
  echo "make-base-image: $name exists ($(docker image inspect --format '{{.Id}}' "$name" | cut -c1-19)); kept (--force makes it again)"
  exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"

root=$(mktemp -d /var/tmp/actortrain-base.XXXXXX)
cleanup() { rm -rf --one-file-system "$root"; }
trap cleanup EXIT

echo "make-base-image: debootstrap --variant=minbase bookworm from $mirror into $root"
debootstrap --variant=minbase --include=libicu72,libssl3,ca-certificates bookworm "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"

# Lean: no package lists, downloaded .debs, documentation or man pages in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
# The Debian mirror the image's apt uses (it may be reachable where the image runs).
echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list"

echo "make-base-image: importing as $name"
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
docker run --rm --network none "$name" /bin/sh -c 'test -e /usr/lib/x86_64-linux-gnu/libssl.so.3 && test -e /usr/lib/x86_64-linux-gnu/libicuuc.so.72' \
  || die "the imported image $name lacks libssl3 or libicu72"
echo "make-base-image: $name is ready ($(docker image inspect --format '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
