"""Structured logs: one JSON object per line, scalar fields only, never a payload.

Both roles log events such as `upload_received` with `round`, `stage`, `participant`,
`bytes` and `duration_s`. `event` refuses `bytes` values and anything that is not a
scalar (or a list or dict of scalars), so an update or a key cannot reach a log by
accident; tests also scan the files for payloads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "logger", "event", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, sort_keys=False)


def _check_field(name: str, value: Any) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_field(name, item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_field(f"{name}.{key}", item)
        return
    raise TypeError(f"log field {name!r}: {type(value).__name__} is not loggable (no payloads)")


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log event `name` with scalar `fields`.

    Raises:
        TypeError: a field holds bytes, an array or another non-scalar value.
    """
    for key, value in fields.items():
        _check_field(key, value)
    logger.log(level, name, extra={"fields": fields})


def configure(role: str, log_file: Path, *, level: int = logging.INFO) -> logging.Logger:
    """Send the `accord` loggers to `log_file` as JSON lines and return the role's logger.

    Args:
        role: `coordinator` or `participant`; the returned logger is `accord.<role>`.
        log_file: appended to; its folder is created.
        level: the least level written.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger("accord")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return logging.getLogger(f"accord.{role}")
