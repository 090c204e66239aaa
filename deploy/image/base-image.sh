#!/bin/sh
# Make the offline base image local/bookworm-python:3.11 (Debian bookworm, python3,
# python3-venv, ca-certificates) with debootstrap from a Debian mirror: no image hub.
#   deploy/image/base-image.sh [MIRROR]   (default: the first Debian URI apt's sources use)
set -eu
tag=${ACCORD_BASE_IMAGE:-local/bookworm-python:3.11}
mirror=${1:-}
if [ -z "$mirror" ]; then
    mirror=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ')
fi
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$tag"
echo "$tag"
