#!/bin/sh
# The image's HEALTHCHECK: grpc.health.v1 Check over mTLS (bin/accord-health, Go).
#
# Coordinator (default): checks ACCORD_HEALTH_ADDR (127.0.0.1:50051) with the probe
#   certificate in ACCORD_HEALTH_TLS_DIR (/etc/accord/coordinator: probe.pem, probe.key,
#   ca.pem, written by `accord provision`).
# Participant: set ACCORD_HEALTH_KIT to its kit; it checks the coordinator the kit
#   names with the kit's certificate (the daemon itself serves nothing).
set -eu
health=/opt/accord/bin/accord-health
if [ -n "${ACCORD_HEALTH_KIT:-}" ]; then
    address=$(sed -n 's/^coordinator = "\(.*\)"$/\1/p' "$ACCORD_HEALTH_KIT/kit.toml")
    exec "$health" -addr "${ACCORD_HEALTH_ADDR:-$address}" -kit "$ACCORD_HEALTH_KIT" -timeout 10s
fi
dir=${ACCORD_HEALTH_TLS_DIR:-/etc/accord/coordinator}
exec "$health" -addr "${ACCORD_HEALTH_ADDR:-127.0.0.1:50051}" \
    -cert "$dir/probe.pem" -key "$dir/probe.key" -ca "$dir/ca.pem" -timeout 10s
