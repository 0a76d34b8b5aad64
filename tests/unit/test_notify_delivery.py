"""Delivery of one endpoint's queue: order, backoff schedule, threshold,
dead letters, filters, and the endpoint settings that drive them."""

from __future__ import annotations

import pytest

from cargohold.config import ConfigError
from cargohold.events import Event
from cargohold.events.dispatch import Delivery, Notifier
from cargohold.events.endpoints import Endpoint, parse_endpoints
from cargohold.events.queue import DurableQueue

SINKS = {"webhook": None}  # the one installed: entries without a type go to it


def endpoint(**settings) -> Endpoint:
    [parsed] = parse_endpoints([{"name": "ep", "url": "http://127.0.0.1:9/", **settings}], SINKS)
    return parsed


def event(n: int, action: str = "push", media_type: str = "application/octet-stream") -> Event:
    return Event(action, "app", f"sha256:{n:064x}", media_type, n)


class FlakySink:
    """Fails the next ``failures`` attempts, then records what it gets."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.received: list[int] = []
        self.attempts = 0

    def send(self, batch):
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("endpoint down")
        self.received += [e.target["size"] for e in batch]


class Metrics:
    def __init__(self):
        self.depths, self.failures = [], []

    def notification_queue_depth(self, endpoint, depth):
        self.depths.append((endpoint, depth))

    def notification_failure(self, endpoint):
        self.failures.append(endpoint)


def drain(delivery: Delivery, steps: int = 100) -> list[float | None]:
    waits = []
    for _ in range(steps):
        wait = delivery.step()
        waits.append(wait)
        if wait is None:
            break
    return waits


def test_delivers_in_order_and_empties_the_queue(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    for i in range(10):
        queue.put([event(i)])
    sink, metrics = FlakySink(), Metrics()
    delivery = Delivery(endpoint(), sink, queue, metrics)
    assert drain(delivery) == [0.0] * 10 + [None]
    assert sink.received == list(range(10))
    assert queue.pending() == []
    assert metrics.depths[0] == ("ep", 10) and metrics.depths[-1] == ("ep", 0)


def test_a_failing_batch_blocks_the_ones_behind_it_until_it_succeeds(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    for i in range(3):
        queue.put([event(i)])
    sink, metrics = FlakySink(failures=4), Metrics()
    delivery = Delivery(endpoint(backoff="1s", threshold=2, maxbackoff="3s"), sink, queue, metrics)
    waits = drain(delivery)
    # backoff until the threshold, then doubling, capped; 0 once it works
    assert waits == [1.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, None]
    assert sink.received == [0, 1, 2]
    assert metrics.failures == ["ep"] * 4


def test_backoff_schedule():
    ep = endpoint(backoff="500ms", threshold=3, maxbackoff="10s")
    assert [ep.delay(f) for f in range(0, 9)] == [0.0, 0.5, 0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert ep.delay(10_000) == 10.0  # no overflow


def test_dead_letter_after_maxattempts_then_the_next_batch(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    queue.put([event(1)])
    queue.put([event(2)])
    sink = FlakySink(failures=3)
    delivery = Delivery(endpoint(maxattempts=3, backoff="1s", maxbackoff="1s"), sink, queue)
    drain(delivery)
    assert sink.received == [2]
    [dead] = (tmp_path / "ep" / "deadletter").iterdir()
    assert '"attempts": 3' in dead.read_text() and "ConnectionRefusedError" in dead.read_text()
    assert queue.pending() == []


def test_maxattempts_counts_across_restarts(tmp_path):
    directory = str(tmp_path / "ep")
    queue = DurableQueue(directory)
    queue.put([event(1)])
    queue.put([event(2)])
    settings = {"maxattempts": 3, "backoff": "1s", "maxbackoff": "1s"}
    sink = FlakySink(failures=100)
    first = Delivery(endpoint(**settings), sink, queue)
    first.step()
    first.step()
    assert sink.attempts == 2 and not list((tmp_path / "ep" / "deadletter").iterdir())
    # the registry restarts: a new process, queue and delivery
    restarted = Delivery(endpoint(**settings), sink, DurableQueue(directory))
    restarted.step()
    [dead] = (tmp_path / "ep" / "deadletter").iterdir()
    assert '"attempts": 3' in dead.read_text() and sink.attempts == 3
    restarted.step()  # the next batch starts its own count
    assert restarted.attempts == 1 and len(list((tmp_path / "ep" / "deadletter").iterdir())) == 1


def test_without_maxattempts_nothing_is_given_up(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    queue.put([event(1)])
    sink = FlakySink(failures=50)
    delivery = Delivery(endpoint(), sink, queue)
    assert len(drain(delivery)) == 52
    assert sink.received == [1] and sink.attempts == 51
    assert not list((tmp_path / "ep" / "deadletter").iterdir())


def test_notifier_filters_then_queues_per_endpoint(tmp_path):
    keep_all = Delivery(endpoint(), FlakySink(), DurableQueue(str(tmp_path / "all")))
    [picky_ep] = parse_endpoints([{
        "name": "picky", "ignoredmediatypes": ["application/octet-stream"],
        "ignore": {"actions": ["pull"], "mediatypes": ["application/vnd.oci.image.index.v1+json"]},
    }], SINKS)
    picky = Delivery(picky_ep, FlakySink(), DurableQueue(str(tmp_path / "picky")))
    notifier = Notifier([keep_all, picky])
    manifest = "application/vnd.oci.image.manifest.v1+json"
    sent = [event(1), event(2, media_type=manifest), event(3, "pull", manifest),
            event(4, media_type="application/vnd.oci.image.index.v1+json"),
            Event("delete", "app", "sha256:" + "5" * 64)]
    for e in sent:
        notifier.cargohold_registry_event(e)
    assert len(keep_all.queue.pending()) == 5
    picked = [b.events[0] for b in picky.queue.pending()]
    assert [(e.action, e.target.get("size")) for e in picked] == [("push", 2), ("delete", None)]


def test_endpoint_defaults():
    ep = endpoint()
    assert (ep.type, ep.disabled, ep.threshold, ep.backoff, ep.maxbackoff, ep.maxattempts) == (
        "webhook", False, 3, 1.0, 300.0, 0)
    assert ep.sink_params == {"name": "ep", "url": "http://127.0.0.1:9/"}


@pytest.mark.parametrize("entry, message", [
    ({"url": "x"}, "notifications.endpoints[0].name: required"),
    ({"name": "a/b"}, "notifications.endpoints[0].name: use letters"),
    ({"name": "a", "type": "kafka"}, "notifications.endpoints[0].type: no installed plugin offers a notification "
                                     "sink named 'kafka' (available: webhook)"),
    ({"name": "a", "backoff": "soon"}, "notifications.endpoints[0].backoff: expected a duration"),
    ({"name": "a", "threshold": 0}, "notifications.endpoints[0].threshold: must be at least 1"),
    ({"name": "a", "maxattempts": "x"}, "notifications.endpoints[0].maxattempts: expected an integer"),
    ({"name": "a", "backoff": "2s", "maxbackoff": "1s"}, "notifications.endpoints[0].maxbackoff: must be at least"),
    ({"name": "a", "ignore": {"actions": ["push", "fetch"]}}, "notifications.endpoints[0].ignore.actions: unknown "
                                                                "action(s) fetch"),
    ({"name": "a", "ignore": {"tags": []}}, "unknown key 'notifications.endpoints[0].ignore.tags'"),
    ("http://x/", "notifications.endpoints[0]: expected a mapping"),
])
def test_bad_entries_name_the_key(entry, message):
    with pytest.raises(ConfigError) as info:
        parse_endpoints([entry], SINKS)
    assert message in str(info.value)


def test_without_a_type_the_only_sink_installed_serves_the_entry():
    [ep] = parse_endpoints([{"name": "a"}], {"relay": None})
    assert ep.type == "relay"
    [ep] = parse_endpoints([{"name": "a", "type": "relay"}], {"relay": None, "webhook": None})
    assert ep.type == "relay"
    with pytest.raises(ConfigError, match=r"endpoints\[0\].type: required when 2 notification sinks are installed "
                                          r"\(available: relay, webhook\)"):
        parse_endpoints([{"name": "a"}], {"relay": None, "webhook": None})
    with pytest.raises(ConfigError, match=r"endpoints\[0\].type: required when 0 notification sinks"):
        parse_endpoints([{"name": "a"}], {})


def test_duplicate_names_are_refused():
    with pytest.raises(ConfigError, match=r"endpoints\[1\].name: 'a' is used by another endpoint"):
        parse_endpoints([{"name": "a"}, {"name": "a"}], SINKS)
