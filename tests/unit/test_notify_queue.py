"""The durable notification queue: order, several writer processes, crash
leftovers, one consumer, segment rotation and removal, dead letters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cargohold.events import Event
from cargohold.events import queue as queue_mod
from cargohold.events.queue import DurableQueue


def event(n: int, action: str = "push") -> Event:
    return Event(action, "app", f"sha256:{n:064x}", "application/octet-stream", n, request_id=str(n), method="PUT")


def sizes(batches) -> list[int]:
    return [e.target["size"] for b in batches for e in b.events]


def segments(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("seg-"))


WRITER = """
import os, sys
from cargohold.events import Event
from cargohold.events.queue import DurableQueue
q = DurableQueue(sys.argv[1])
for n in range(int(sys.argv[2]), int(sys.argv[3])):
    q.put([Event("pull", "app", size=n)])
if sys.argv[4] == "kill":
    os.kill(os.getpid(), 9)  # no close, no sync
"""


def test_batches_come_back_in_put_order_until_acked(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    events = [event(i) for i in range(50)]
    for e in events:
        queue.put([e])
    batches = queue.pending()
    assert [b.events for b in batches] == [[e] for e in events]
    for batch in batches[:10]:
        queue.ack(batch)
    assert sizes(DurableQueue(str(tmp_path / "ep")).pending()) == list(range(10, 50))


def test_records_of_a_writer_killed_with_sigkill_are_all_there(tmp_path):
    directory = str(tmp_path / "ep")
    subprocess.run([sys.executable, "-c", WRITER, directory, "0", "200", "kill"])
    assert sizes(DurableQueue(directory).pending()) == list(range(200))


def test_several_writer_processes_are_merged_by_enqueue_time(tmp_path):
    directory = str(tmp_path / "ep")
    subprocess.run([sys.executable, "-c", WRITER, directory, "0", "3", "exit"], check=True)
    queue = DurableQueue(directory)
    queue.put([event(3)])
    subprocess.run([sys.executable, "-c", WRITER, directory, "4", "6", "exit"], check=True)
    batches = queue.pending()
    assert sizes(batches) == [0, 1, 2, 3, 4, 5]
    assert [e.action for b in batches for e in b.events] == ["pull"] * 3 + ["push"] + ["pull"] * 2
    assert len(segments(directory)) == 3
    for batch in batches:
        queue.ack(batch)
    assert queue.pending() == []
    # The other writers are gone and their segments delivered: removed.
    # This process's own segment stays while it may still write to it.
    [own] = segments(directory)
    assert f"-{os.getpid():07d}." in own
    queue.close()
    assert queue.pending() == [] and segments(directory) == []


def test_a_record_cut_short_or_unreadable_is_set_aside(tmp_path, caplog):
    directory = tmp_path / "ep"
    queue = DurableQueue(str(directory))
    seventh = event(7)
    good = json.dumps([2, seventh.to_record()])
    not_an_event = json.dumps([3, ["id", "not a time", "push"]])
    # An abandoned segment (no writer holds it): a good record, garbage, JSON
    # that is not an event, a good record, and a last record cut short by a crash.
    (directory / "seg-00000000000000000001-0000001.log").write_text(
        good + "\n" + "{not json\n" + not_an_event + "\n" + good.replace("[2,", "[4,", 1) + "\n" + good[:40])
    batches = queue.pending()
    assert [len(b.events) for b in batches] == [1, 0, 0, 1]  # the unreadable ones: nothing to send
    assert batches[0].events == [seventh] and batches[0].events[0].to_dict() == seventh.to_dict()
    for batch in batches:
        queue.ack(batch)
    assert queue.pending() == []  # the cut-short tail is set aside now ...
    assert queue.pending() == [] and segments(directory) == []  # ... and the segment goes
    kept = sorted(os.listdir(directory / "corrupt"))
    assert len(kept) == 3
    assert (directory / "corrupt" / kept[-1]).read_text() == good[:40]
    assert "record cut short" in caplog.text and "unreadable record" in caplog.text


def test_segments_rotate_and_full_ones_go_once_delivered(tmp_path, monkeypatch):
    monkeypatch.setattr(queue_mod, "SEGMENT_BYTES", 1000)
    directory = str(tmp_path / "ep")
    queue = DurableQueue(directory)
    for i in range(20):
        queue.put([event(i)])
    assert len(segments(directory)) > 3
    assert queue.sync()
    batches = queue.pending()
    assert sizes(batches) == list(range(20))
    for batch in batches:
        queue.ack(batch)
    queue.pending()
    assert len(segments(directory)) == 1  # only the one still open for writing
    assert not queue.sync()  # nothing new


def test_only_one_process_consumes(tmp_path):
    directory = str(tmp_path / "ep")
    queue = DurableQueue(directory)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cargohold.events.queue import DurableQueue;"
         "q = DurableQueue(sys.argv[1]); assert q.lock(); print('locked', flush=True); time.sleep(60)", directory],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert not queue.lock()
        holder.kill()  # even SIGKILL releases it
        holder.wait()
        assert queue.lock()
        assert queue.lock()  # re-entrant within the process
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
        queue.unlock()


def test_dead_letter_keeps_the_events_and_the_reason(tmp_path):
    queue = DurableQueue(str(tmp_path / "ep"))
    queue.put([event(1), event(2)])
    queue.put([event(3)])
    first, _ = queue.pending()
    path = queue.dead_letter(first, attempts=5, error="ConnectionRefusedError: nope")
    assert sizes(queue.pending()) == [3]
    record = json.loads(open(path).read())
    assert record["attempts"] == 5 and record["error"] == "ConnectionRefusedError: nope"
    assert [e["target"]["size"] for e in record["events"]] == [1, 2]
    assert record["failedAt"].endswith("Z")


def test_a_segment_never_named_by_a_killed_writer_is_removed(tmp_path):
    directory = tmp_path / "ep"
    queue = DurableQueue(str(directory))
    (directory / ".tmp-seg-00000000000000000001-0000001.log").write_bytes(b"")
    queue.remove_stale_tmp()
    assert sorted(os.listdir(directory)) == ["cursor", "deadletter"]


def test_a_long_backlog_is_read_in_parts_without_breaking_the_order(tmp_path, monkeypatch):
    monkeypatch.setattr(queue_mod, "SEGMENT_BYTES", 3000)
    monkeypatch.setattr(queue_mod, "READ_BYTES", 700)
    directory = str(tmp_path / "ep")
    queue = DurableQueue(directory)
    for i in range(40):
        queue.put([event(i)])
    subprocess.run([sys.executable, "-c", WRITER, directory, "40", "45", "exit"], check=True)
    queue.put([event(45)])
    assert len(segments(directory)) > 3
    delivered = []
    while batches := queue.pending():
        for batch in batches:
            delivered += sizes([batch])
            queue.ack(batch)
    assert delivered == list(range(46))


def test_a_failed_append_does_not_spoil_the_records_after_it(tmp_path, monkeypatch):
    queue = DurableQueue(str(tmp_path / "ep"))
    queue.put([event(1)])
    real_write = os.write

    def disk_full(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", disk_full)
        with pytest.raises(OSError):
            queue.put([event(2)])
    queue.put([event(3)])
    queue.sync()  # closes the damaged segment
    delivered = []
    while batches := queue.pending():
        for batch in batches:
            delivered += sizes([batch])
            queue.ack(batch)
    assert delivered == [1, 3]
    assert len(os.listdir(tmp_path / "ep" / "corrupt")) == 1  # the 10 bytes, set aside
