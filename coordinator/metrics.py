"""Prometheus metrics, derived from the structured events the orchestrator logs.

One seam: `MetricsHandler` is a logging handler that reads the fields of the events in
`accord.core.logs` (`round_finished`, `upload_received`, `aggregate_sent`, `enrolled`) and
updates counters. So metrics and logs can never disagree, and the orchestrator knows
nothing about Prometheus. `start_metrics` exposes them on `/metrics`.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
ROUNDS = Counter("accord_rounds", "Rounds finished, by outcome", ["outcome"], registry=REGISTRY)
ROUND_SECONDS = Gauge("accord_last_round_seconds", "Duration of the last round", registry=REGISTRY)
UPDATE_BYTES = Counter("accord_update_bytes", "Update bytes received", registry=REGISTRY)
AGGREGATE_BYTES = Counter("accord_aggregate_bytes", "Aggregate bytes sent", registry=REGISTRY)
ENROLMENTS = Counter("accord_enrolments", "Participant enrolments", registry=REGISTRY)
CURRENT_ROUND = Gauge("accord_round", "The round being run", registry=REGISTRY)


class MetricsHandler(logging.Handler):
    """Updates the metrics above from the orchestrator's events."""

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        name = record.getMessage()
        if name == "round_started":
            CURRENT_ROUND.set(fields.get("round", 0))
        elif name == "round_finished":
            ROUNDS.labels(outcome=fields.get("stage", "unknown")).inc()
            ROUND_SECONDS.set(fields.get("duration_s", 0.0))
        elif name == "upload_received":
            UPDATE_BYTES.inc(fields.get("bytes", 0))
        elif name == "aggregate_sent":
            AGGREGATE_BYTES.inc(fields.get("bytes", 0))
        elif name == "enrolled":
            ENROLMENTS.inc()


def start_metrics(host: str, port: int) -> int:
    """Serve `/metrics` on `host:port` (0 picks a port) and feed it; return the port."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    logging.getLogger("accord").addHandler(MetricsHandler())
    return int(server.server_port)
