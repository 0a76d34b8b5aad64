"""The webhook sink against a real HTTP receiver: one POST per attempt,
envelope and headers as configured, failures raised."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket

import pytest

from cargohold.config import ConfigError
from cargohold.events import ENVELOPE_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE_V1, Event
from cargohold.testing.notifications import EventReceiver
from cargohold.testing.server import free_port
from cargohold_notify_webhook import SIGNATURE_HEADER, WebhookSink, cargohold_notification_sinks


def event(digest: str = "sha256:" + "a" * 64) -> Event:
    return Event("push", "app", digest, "application/octet-stream", 3, url="http://r/x", request_id="r1",
                 addr="127.0.0.1", host="r", method="PUT", useragent="t", source_addr="h:5000", instance_id="i")


@pytest.fixture
def receiver():
    with EventReceiver() as r:
        yield r


def sink(**params) -> WebhookSink:
    return cargohold_notification_sinks()["webhook"]({"name": "ep", **params})


def test_posts_the_v2_envelope_with_configured_headers(receiver):
    batch = [event(), event("sha256:" + "b" * 64)]
    sink(url=receiver.url, headers={"Authorization": ["Bearer t"], "X-Multi": ["1", "2"]}).send(batch)
    [delivery] = receiver.deliveries
    assert delivery.headers["Content-Type"] == ENVELOPE_MEDIA_TYPE
    assert delivery.headers["Authorization"] == "Bearer t"
    assert json.loads(delivery.body) == {"events": [e.to_dict() for e in batch]}
    assert SIGNATURE_HEADER not in delivery.headers


def test_v1_envelope_is_selectable(receiver):
    sink(url=receiver.url, envelope="v1").send([event()])
    assert receiver.deliveries[0].headers["Content-Type"] == ENVELOPE_MEDIA_TYPE_V1


def test_signature_is_the_hmac_of_the_exact_body(receiver):
    sink(url=receiver.url, signing={"secret": "k"}).send([event()])
    sink(url=receiver.url, signing={"secret": "k", "header": "X-Hub-Signature-256"}).send([event()])
    first, second = receiver.deliveries
    assert first.headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(b"k", first.body, hashlib.sha256).hexdigest()
    assert second.headers["X-Hub-Signature-256"].startswith("sha256=")
    assert SIGNATURE_HEADER not in second.headers


@pytest.mark.parametrize("status", [301, 400, 500, 503])
def test_a_non_2xx_answer_raises(receiver, status):
    receiver.status = status
    with pytest.raises(Exception, match=str(status)):
        sink(url=receiver.url).send([event()])


def test_a_closed_port_raises():
    with pytest.raises(OSError):
        sink(url=f"http://127.0.0.1:{free_port()}/").send([event()])


def test_a_silent_endpoint_times_out():
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        with pytest.raises(TimeoutError):
            sink(url=f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout="200ms").send([event()])


@pytest.mark.parametrize("params, message", [
    ({}, "url: required"),
    ({"url": "ftp://x/"}, "url: expected an http:// or https:// URL"),
    ({"url": "http://x/", "timeout": "soon"}, "timeout: expected a duration"),
    ({"url": "http://x/", "envelope": "v3"}, "envelope: expected one of v1, v2"),
    ({"url": "http://x/", "urll": "y"}, "unknown key 'urll' (did you mean 'url'?)"),
    ({"url": "http://x/", "signing": {"secrt": "k"}}, "unknown key 'signing.secrt'"),
    ({"url": "https://x/", "tls": {"cafile": "/nonexistent/ca.pem"}}, "tls.cafile: cannot load '/nonexistent/ca.pem'"),
])
def test_bad_settings_name_the_key(params, message):
    with pytest.raises((ConfigError, ValueError)) as info:
        sink(**params)
    assert message in str(info.value)


def test_the_readme_example_is_a_valid_configuration(tmp_path):
    import re
    from pathlib import Path

    import yaml

    from cargohold.app import load_config
    from cargohold.events.dispatch import build_notifier
    from cargohold.storage.inmemory import InMemoryDriver

    readme = (Path(__file__).resolve().parents[3] / "docs" / "operations" / "webhook.md").read_text()
    doc = yaml.safe_load(re.search(r"```yaml\n(.*?)```", readme, re.S).group(1))
    doc["notifications"]["queuedir"] = str(tmp_path / "queue")
    del doc["notifications"]["endpoints"][0]["tls"]["cafile"]  # a site-specific path
    doc["storage"] = {"filesystem": {"rootdirectory": str(tmp_path / "root")}}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(doc))
    cfg, pm = load_config(str(tmp_path / "config.yml"), environ={})
    [delivery] = build_notifier(pm, cfg, InMemoryDriver()).deliveries
    assert delivery.endpoint.ignored_actions == {"pull"}
    assert delivery.sink.signature_header == SIGNATURE_HEADER and delivery.sink.timeout == 5.0
