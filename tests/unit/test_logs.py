"""Log formatting: fields on every line, the request id inside requests."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Flask

from cargohold.request_context import REQUEST_ID_KEY
from cargohold.server import logs


@pytest.fixture
def capture(monkeypatch):
    """``capture(log_config)``: configure logging into a buffer; returns it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()

    def configure(log_config):
        monkeypatch.setattr(logs.sys, "stderr", stream)
        logs.configure_logging(log_config)
        return stream

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)


def test_json_lines_carry_fields_request_id_and_exceptions(capture):
    out = capture({"formatter": "json", "level": "info", "fields": {"service": "registry", "zone": "b"}})
    log = logging.getLogger("cargohold.test")
    log.info("outside %s", "requests")
    app = Flask("t")
    with app.test_request_context("/v2/", environ_base={REQUEST_ID_KEY: "rid-7"}):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("inside")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["msg"] == "outside requests" and first["level"] == "info"
    assert first["service"] == "registry" and first["zone"] == "b" and "request_id" not in first
    assert second["request_id"] == "rid-7" and second["level"] == "error"
    assert "ValueError: boom" in second["exc"]


def test_text_lines_end_with_request_id_and_fields(capture):
    out = capture({"formatter": "text", "level": "warn", "fields": {"service": "registry", "note": "two words"}})
    log = logging.getLogger("cargohold.test")
    with Flask("t").test_request_context("/", environ_base={REQUEST_ID_KEY: "rid-8"}):
        log.warning("slow storage")
    [line] = out.getvalue().splitlines()
    assert line.endswith('WARNING [%d] cargohold.test: slow storage request_id=rid-8 service=registry '
                         'note="two words"' % __import__("os").getpid())


def test_access_fields_become_json_keys(capture):
    out = capture({"formatter": "json", "level": "info"})
    logging.getLogger("cargohold.access").info(
        "line", extra={"request_id": "r1", logs.ACCESS_FIELDS: {"method": "GET", "status": 200}})
    entry = json.loads(out.getvalue())
    assert entry["request_id"] == "r1" and entry["method"] == "GET" and entry["status"] == 200
