"""Process-wide logging set-up: text or JSON lines on stderr.

Every line carries the ``log.fields`` of the configuration and, when it was
written while serving a request, that request's id (``request_id``).  Access
log lines (logger ``cargohold.access``) also carry the request's method,
path, status, bytes sent, duration, remote address and user agent: in JSON
as keys of their own, in text inside the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Mapping

from cargohold.request_context import current_request_id

_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG}

#: ``extra`` key of access log records: a dict of the request's fields.
ACCESS_FIELDS = "access"


class _RequestContext(logging.Filter):
    """Stamps each record with the id of the request being served, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any]):
        super().__init__()
        self.fields = dict(fields)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name, "pid": record.process, "msg": record.getMessage(),
        }
        entry.update(self.fields)
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        access = getattr(record, ACCESS_FIELDS, None)
        if access:
            entry.update(access)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _TextFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any]):
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        self.suffix = "".join(f" {k}={_quote(v)}" for k, v in fields.items())

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        extra = f" request_id={request_id}" if request_id else ""
        if not (extra or self.suffix):
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the line
        return head + extra + self.suffix + sep + tail


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


def configure_logging(log_config: Mapping[str, Any]) -> None:
    """Send all logging to stderr at ``log.level`` in ``log.formatter``
    (``text`` or ``json``) with ``log.fields`` on every line, replacing the
    root logger's handlers."""
    fields = log_config.get("fields") or {}
    handler = logging.StreamHandler(sys.stderr)
    if log_config.get("formatter") == "json":
        handler.setFormatter(_JsonFormatter(fields))
    else:
        handler.setFormatter(_TextFormatter(fields))
    handler.addFilter(_RequestContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(str(log_config.get("level", "info")).lower(), logging.INFO))
