"""Notifications inside the app: the event fields for each action, as the
reference registry sends them, and ``notifications`` settings checked at
start-up.  (Delivery over HTTP: plugins/cargohold-notify-webhook/tests.)"""

from __future__ import annotations

import os

import pytest

from cargohold import hookimpl
from cargohold.config import ConfigError
from cargohold.events.queue import DurableQueue

from .conftest import BASE_CONFIG
from .helpers import EventLog, digest_of, push_blob, push_image


class RecordingSink:
    @hookimpl
    def cargohold_notification_sinks(self):
        return {"recording": lambda params: self}

    def send(self, batch):
        pass


@pytest.fixture
def evented(make_app):
    log = EventLog()
    app = make_app(plugins=[log])
    return app.test_client(), log.events


def test_delete_events_carry_what_the_reference_sends(evented):
    client, events = evented
    digest, _ = push_image(client, "app", "v1")
    layer = push_blob(client, "app", b"gone")
    events.clear()
    assert client.delete("/v2/app/manifests/v1").status_code == 202
    assert client.delete(f"/v2/app/manifests/{digest}").status_code == 202
    assert client.delete(f"/v2/app/blobs/{layer}").status_code == 202
    tag_delete, manifest_delete, blob_delete = events
    assert (tag_delete.action, tag_delete.target) == ("delete", {"repository": "app", "tag": "v1"})
    assert manifest_delete.target == {"digest": digest, "repository": "app"}
    assert blob_delete.target == {"digest": layer, "repository": "app"}


def test_mount_event_names_the_source_repository(evented):
    client, events = evented
    layer = push_blob(client, "from/here", b"shared layer")
    events.clear()
    resp = client.post(f"/v2/to/there/blobs/uploads/?mount={layer}&from=from/here")
    assert resp.status_code == 201
    [mount] = events
    assert mount.action == "mount"
    assert mount.target == {
        "mediaType": "application/octet-stream", "digest": layer, "size": 12, "length": 12,
        "repository": "to/there", "fromRepository": "from/here",
        "url": f"http://localhost/v2/to/there/blobs/{layer}",
    }


@pytest.mark.parametrize("http,url", [
    ({"prefix": "/registry"}, "http://localhost/registry/v2/app/blobs/"),
    ({"prefix": "/registry", "host": "https://registry.example.com"},
     "https://registry.example.com/registry/v2/app/blobs/"),
])
def test_event_urls_follow_http_host_and_prefix(make_app, http, url):
    log = EventLog()
    client = make_app({**BASE_CONFIG, "http": http}, plugins=[log]).test_client()
    prefix = http["prefix"]
    data = b"blob"
    resp = client.post(f"{prefix}/v2/app/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert resp.status_code == 201
    [event] = log.events
    assert event.url == url + event.digest


def test_events_are_queued_on_disk_before_the_response(make_app, tmp_path):
    queue_dir = tmp_path / "queue"
    app = make_app({**BASE_CONFIG, "notifications": {
        "queuedir": str(queue_dir),
        "endpoints": [{"name": "all", "type": "recording"},
                      {"name": "no-pulls", "type": "recording", "ignore": {"actions": ["pull"]}},
                      {"name": "off", "type": "recording", "disabled": True}],
    }}, plugins=[RecordingSink()])
    client = app.test_client()
    digest = push_blob(client, "app", b"data")
    assert client.get(f"/v2/app/blobs/{digest}").status_code == 200

    def queued(name):
        queue = DurableQueue(str(queue_dir / name))
        return [(e.action, e.target["digest"]) for b in queue.pending() for e in b.events]

    assert queued("all") == [("push", digest), ("pull", digest)]
    assert queued("no-pulls") == [("push", digest)]
    assert not os.path.exists(queue_dir / "off")


def test_queue_defaults_to_the_filesystem_root(make_app, tmp_path):
    app = make_app({"storage": {"filesystem": {"rootdirectory": str(tmp_path)}},
                    "notifications": {"endpoints": [{"name": "ep", "type": "recording"}]}},
                   plugins=[RecordingSink()])
    push_blob(app.test_client(), "app", b"data")
    assert len(DurableQueue(str(tmp_path / "~notifications" / "ep")).pending()) == 1


@pytest.mark.parametrize("notifications, message", [
    ({"endpoints": [{"name": "ep", "type": "recording"}]},
     "notifications.queuedir: required with storage.inmemory"),
    ({"queuedir": "/tmp", "endpoints": [{"name": "ep", "type": "nosuch"}]},
     "notifications.endpoints[0].type: no installed plugin offers a notification sink named 'nosuch'"),
    ({"queuedir": "/tmp", "endpoints": [{"name": "ep", "type": "recording", "backoff": "x"}]},
     "notifications.endpoints[0].backoff: expected a duration"),
    ({"queuedir": "/tmp", "endpoints": [{"type": "recording"}]},
     "notifications.endpoints[0].name: required"),
])
def test_bad_notification_settings_fail_startup_naming_the_key(make_app, notifications, message):
    with pytest.raises(ConfigError) as info:
        make_app({**BASE_CONFIG, "notifications": notifications}, plugins=[RecordingSink()])
    assert message in str(info.value)


def test_a_sink_rejecting_its_settings_is_named_with_the_entry(make_app):
    class Picky:
        @hookimpl
        def cargohold_notification_sinks(self):
            def factory(params):
                raise ValueError("url: required")
            return {"picky": factory}

    with pytest.raises(ConfigError, match=r"notifications.endpoints\[0\].url: required"):
        make_app({**BASE_CONFIG, "notifications": {"queuedir": "/tmp", "endpoints": [{"name": "a", "type": "picky"}]}},
                 plugins=[Picky()])
