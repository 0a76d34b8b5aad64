"""The Event value: its fields, records, equality and envelope JSON."""

import json
import pickle
import re

import pytest

from cargohold.events import Event, envelope
from cargohold.events.model import fields_to_event, rfc3339


def sample(**overrides):
    fields = dict(request_id="r1", addr="10.0.0.1:5", host="reg:5000", method="GET", useragent="skopeo",
                  actor_name="alice", source_addr="box:5000", instance_id="inst")
    fields.update(overrides)
    return Event("pull", "team/app", "sha256:" + "a" * 64, "application/vnd.oci.image.manifest.v1+json", 42,
                 "v1", "http://reg:5000/v2/team/app/manifests/sha256:" + "a" * 64, **fields)


def test_fields_are_read_by_name():
    event = sample()
    assert (event.action, event.repository, event.size, event.tag) == ("pull", "team/app", 42, "v1")
    assert (event.request_id, event.useragent, event.actor_name) == ("r1", "skopeo", "alice")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event.id)
    assert isinstance(event.time_ns, int) and event.timestamp == rfc3339(event.time_ns)


def test_an_event_cannot_be_changed():
    event = sample()
    with pytest.raises(AttributeError):
        event.action = "push"
    with pytest.raises(AttributeError):
        event.extra = 1


def test_events_are_equal_when_all_fields_are():
    event = sample()
    same = Event.from_record(json.loads(json.dumps(event.to_record())))
    assert same == event and hash(same) == hash(event) and not same != event
    assert sample(id=event.id, time_ns=event.time_ns, useragent="docker") != event
    assert event != "not an event"


def test_record_round_trip_and_pickle():
    event = sample(actor_name=None)
    assert Event.from_record(event.to_record()) == event
    assert fields_to_event(tuple(event.to_record())) == event
    assert pickle.loads(pickle.dumps(event)) == event


@pytest.mark.parametrize("record", [
    None, [], ["x"] * 3,
    ["", 1, "pull", "app", None, None, None, None, None, None, "", "", "", "", "", None, "", ""],  # empty id
    ["i", "1", "pull", "app", None, None, None, None, None, None, "", "", "", "", "", None, "", ""],  # time as text
    ["i", 1, "fetch", "app", None, None, None, None, None, None, "", "", "", "", "", None, "", ""],  # action
    ["i", 1, "pull", "app", None, None, "3", None, None, None, "", "", "", "", "", None, "", ""],  # size as text
])
def test_from_record_refuses_what_is_not_a_record(record):
    with pytest.raises(ValueError):
        Event.from_record(record)


def test_envelope_has_the_reference_shape():
    event = sample()
    doc = json.loads(envelope([event]))
    (only,) = doc["events"]
    assert only["target"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64, "size": 42,
        "length": 42, "repository": "team/app", "url": "http://reg:5000/v2/team/app/manifests/sha256:" + "a" * 64,
        "tag": "v1",
    }
    assert only["request"] == {"id": "r1", "addr": "10.0.0.1:5", "host": "reg:5000", "method": "GET",
                               "useragent": "skopeo"}
    assert only["actor"] == {"name": "alice"} and only["source"] == {"addr": "box:5000", "instanceID": "inst"}
    assert only["id"] == event.id and only["action"] == "pull" and only["timestamp"].endswith("Z")
