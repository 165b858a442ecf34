#!/usr/bin/env bash
# Builds ActorTrain's container image of the MNIST example (any program that calls
# ActorTrainHost.Run builds the same way: --project).
#
#   deploy/docker/build-image.sh [--tag TAG] [--base IMAGE] [--project CSPROJ] [--work DIR] [--keep-publish]
#
# 1. `dotnet publish` the program self-contained for linux-x64 (Release) on this machine, with
#    its intermediate files under a work folder of its own, so the checkout's bin/ and obj/ are
#    not touched. The publish folder carries the .NET runtime, TorchSharp and libtorch, and the
#    example's data.
# 2. `docker build` deploy/docker/Dockerfile with that folder as the build context. The image's
#    first stage trims the folder; the second is the base image (default
#    actortrain-base:bookworm, made by deploy/docker/make-base-image.sh) with a non-root user
#    and the program. No .NET SDK goes into the image.
#
# The build runs with --network host: the Docker daemon started by start-dockerd.sh has no
# bridge. Defaults: --tag actortrain-mnist:latest, --project examples/Mnist/Mnist.csproj,
# --work a new folder under /tmp (removed at the end unless --keep-publish).
# Extra arguments after `--` go to dotnet publish (e.g. -- -p:ActorTrainCuda=true).
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=actortrain-mnist:latest
base=actortrain-base:bookworm
project=examples/Mnist/Mnist.csproj
work=""
keep=0
publish_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag|--base|--project|--work)
      [[ $# -ge 2 ]] || { echo "build-image: $1 needs a value" >&2; exit 2; }
      case "$1" in --tag) tag=$2 ;; --base) base=$2 ;; --project) project=$2 ;; --work) work=$2 ;; esac
      shift 2 ;;
    --keep-publish) keep=1; shift ;;
    --) shift; publish_args=("$@"); break ;;
    *) echo "build-image: unknown argument '$1' (expected --tag, --base, --project, --work, --keep-publish or -- ARGS)" >&2; exit 2 ;;
  esac
done

die() { echo "build-image: $*" >&2; exit 1; }
[[ -f $project ]] || die "no project file $project"
command -v dotnet >/dev/null || die "the .NET SDK (dotnet) is not on PATH"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (start one: deploy/docker/start-dockerd.sh)"
docker image inspect "$base" >/dev/null 2>&1 || die "no base image $base (make it: deploy/docker/make-base-image.sh)"

if [[ -z $work ]]; then work=$(mktemp -d /tmp/actortrain-image.XXXXXX); fi
mkdir -p "$work"
if [[ $keep == 0 ]]; then trap 'rm -rf "$work"' EXIT; fi
publish="$work/publish"
rm -rf "$publish"

assembly=$(sed -n 's:.*<AssemblyName>\(.*\)</AssemblyName>.*:\1:p' "$project" | head -n 1)
[[ -n $assembly ]] || assembly=$(basename "$project" .csproj)

echo "build-image: dotnet publish $project (self-contained, linux-x64) into $publish"
dotnet publish "$project" -c Release -r linux-x64 --self-contained \
  --artifacts-path "$work/artifacts" -o "$publish" -p:ActorTrainLinkNative=false -nologo -v:q "${publish_args[@]}" \
  || die "dotnet publish failed"
[[ -x $publish/$assembly ]] || die "the publish folder has no executable $assembly"

echo "build-image: docker build $tag (base $base, program $assembly)"
# The classic builder: it takes --network host as is (BuildKit wants an entitlement for it, and
# the buildx plugin), and the Dockerfile uses nothing of BuildKit's.
DOCKER_BUILDKIT=0 docker build --network host -f deploy/docker/Dockerfile \
  --build-arg "BASE_IMAGE=$base" --build-arg "APP=$assembly" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$tag" "$publish" || die "docker build failed"
# The first stage's image is left untagged by the classic builder; it is of no further use.
docker image prune -f --filter label=org.actortrain.stage=trim >/dev/null || true
echo "build-image: built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
