#!/bin/sh
# Prepare the image's build context in OUT and build the image:
#   deploy/image/build-context.sh OUT [TAG]      (TAG default: accord:local)
# OUT receives Dockerfile, healthcheck.sh, wheels/ (Accord and all its dependencies, as
# `pip wheel` resolves them with this machine's pip configuration, torch pinned to
# $ACCORD_TORCH, default torch==2.13.0, whose CPU wheel (2.13.0+cpu) lies in the pip
# find-links folder: unpinned, pip takes the newest CUDA build and its nvidia-* wheels)
# and bin/accord-health (Go, CGO off: static).
# Needs: python3 with pip, go with Debian's golang-google-grpc-dev, docker, and the base
# image (deploy/image/base-image.sh).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: build-context.sh OUT [TAG]}
tag=${2:-accord:local}
python=${PYTHON:-python3}
mkdir -p "$out/wheels" "$out/bin"
cp "$here/Dockerfile" "$here/healthcheck.sh" "$out/"
"$python" -m pip wheel --quiet --wheel-dir "$out/wheels" "${ACCORD_TORCH:-torch==2.13.0}" "$repo"
if ls "$out/wheels" | grep -q '^nvidia_'; then
    echo "build-context.sh: CUDA wheels in $out/wheels: pip did not find torch's CPU wheel" >&2
    exit 1
fi
(cd "$repo/deploy/healthcheck" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= CGO_ENABLED=0 \
    go build -trimpath -o "$out/bin/accord-health" .)
docker build --network host --tag "$tag" "$out"
