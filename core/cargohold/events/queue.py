"""One endpoint's durable queue: append-only segment files on local disk.

Layout under the endpoint's directory::

    seg-<start_ns>-<pid>.log   records appended by one process, one per line:
                               [<enqueue time, ns>, <event record>, ...]
                               (each event as :meth:`Event.to_record`)
    cursor/<segment>           how far that segment was delivered (bytes)
    attempts                   failed attempts at the oldest batch: <batch> <n>
    deliver.lock               flock()ed by the one process delivering
    deadletter/<batch>.json    batches given up on, with the last error
    corrupt/<batch>            records that could not be read, set aside

Producing.  Each process appends to a segment of its own (so records never
interleave), holding a shared ``flock`` on it while it may still write;
:meth:`DurableQueue.put` is one ``write()`` of one line.  When it returns,
the record is in the file, so once the request that caused the event sends
its response, the event survives the registry being killed (SIGKILL, OOM)
at any moment.  ``fsync`` happens off the request path: :meth:`sync` (called
by the dispatcher every fraction of a second, and at shutdown) flushes the
segment with one ``fdatasync``; a power loss or kernel crash can lose what
was appended since.  A segment is closed for writing past
:data:`SEGMENT_BYTES` and a new one started.

Consuming.  Only the holder of ``deliver.lock`` (:meth:`lock`) consumes.
:meth:`pending` returns the undelivered records of every segment, ordered
by enqueue time (strictly within a process; concurrent requests in
different processes have no order to keep); :meth:`ack` and
:meth:`dead_letter` move the segment's cursor past one.  A record leaves the
queue only that way, so delivery is at least once: a crash between a
successful send and the cursor update sends it again.  Segments that are
fully delivered and no longer locked by their writer are deleted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Sequence

from cargohold.blocking import native_lock
from cargohold.events.model import Event

log = logging.getLogger("cargohold.notifications")

#: A process starts a new segment once its current one is this big.
SEGMENT_BYTES = 4 * 1024 * 1024
#: At most this much of each segment is read per :meth:`DurableQueue.pending`.
READ_BYTES = 256 * 1024

_PREFIX, _SUFFIX = "seg-", ".log"
_TMP = ".tmp-"



def _record_encoder():
    """Compact JSON for a queue record.  ``JSONEncoder.encode`` builds a new
    C encoder on every call, a good part of an event's cost on the request
    path; one built once is reused where the interpreter has it (checked
    against ``json.dumps`` at import, else the plain encoder)."""
    plain = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    try:
        from json.encoder import c_make_encoder, encode_basestring_ascii

        c_encoder = c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)

        def fast(record: list) -> str:
            return "".join(c_encoder(record, 0))

        sample = [1, "a\u00e9\n\"", None, [2, "b"]]
        if fast(sample) == plain(sample):
            return fast
    except Exception:  # no C accelerator, or its internals changed
        pass
    return plain


_encode = _record_encoder()

# Counts forks, so that a child never appends to its parent's segment
# (cheaper than comparing os.getpid() on every put).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


@dataclass
class Batch:
    """A queued record: the events of one :meth:`DurableQueue.put`, where it
    lies (segment, byte range) and when it was queued (ns)."""

    segment: str
    start: int
    end: int
    stamp: int
    events: list[Event]

    @property
    def name(self) -> str:
        return f"{self.segment[:-len(_SUFFIX)]}-{self.start:012d}"


class DurableQueue:
    """The queue in ``directory`` (created if missing).  Any number of
    processes may :meth:`put`; the one holding :meth:`lock` consumes."""

    def __init__(self, directory: str):
        self.directory = directory
        self.deadletter_dir = os.path.join(directory, "deadletter")
        self.corrupt_dir = os.path.join(directory, "corrupt")
        self.cursor_dir = os.path.join(directory, "cursor")
        for d in (self.deadletter_dir, self.cursor_dir):
            os.makedirs(d, exist_ok=True)
        self._guard = native_lock()  # put() may race sync() in the thread pool
        self._fd: int | None = None  # this process's segment
        self._size = 0
        self._fork = 0  # the value of _forks when the segment was opened
        self._last_ns = 0
        self._dirty = False
        self._new_segment = False
        self._retired: list[int] = []  # full segments, closed once synced
        self._lock_fd: int | None = None

    # -- producing -------------------------------------------------------------

    def put(self, events: Sequence[Event]) -> None:
        """Append ``events`` as one record.  It is in the file when this
        returns (see the module's note on durability)."""
        with self._guard:
            stamp = time.time_ns()
            if stamp <= self._last_ns:
                stamp = self._last_ns + 1
            self._last_ns = stamp
            # An Event is the tuple of its record's fields: encoded as it is.
            line = (_encode([stamp, *events]) + "\n").encode()
            if self._fd is None or self._fork != _forks or self._size >= SEGMENT_BYTES:
                self._open_segment(stamp)
            try:
                written = os.write(self._fd, line)
                if written < len(line):  # only on a nearly full disk
                    view = memoryview(line)[written:]
                    while view:
                        view = view[os.write(self._fd, view):]
            except OSError:
                # A record cut short (disk full): later ones must not be
                # glued to it, so they go to a new segment.
                self._size = SEGMENT_BYTES
                raise
            self._size += len(line)
            self._dirty = True

    def _open_segment(self, stamp: int) -> None:
        """Start a new segment, locked before it gets its name (a consumer
        must never take a segment being opened for an abandoned one)."""
        if self._fd is not None:
            if self._fork == _forks:
                self._retired.append(self._fd)
            else:  # a forked child never writes its parent's segment
                os.close(self._fd)  # (the parent's copy keeps the flock)
            self._fd = None
        self._fork = _forks
        name = f"{_PREFIX}{stamp:020d}-{os.getpid():07d}{_SUFFIX}"
        tmp = os.path.join(self.directory, _TMP + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.rename(tmp, os.path.join(self.directory, name))
        self._fd, self._size, self._new_segment = fd, 0, True

    def sync(self) -> bool:
        """fsync what this process appended since the last call (and the
        directory, after a new segment).  Returns whether there was any."""
        with self._guard:
            fd, dirty, new = self._fd, self._dirty, self._new_segment
            retired, self._retired = self._retired, []
            self._dirty = self._new_segment = False
        for old in retired:
            os.fsync(old)
            os.close(old)  # releases its flock: the consumer may delete it once delivered
        if fd is not None and dirty:
            os.fdatasync(fd)
        if new:
            _fsync_dir(self.directory)
        return bool(dirty or retired)

    def close(self) -> None:
        """Sync and close this process's segment."""
        self.sync()
        with self._guard:
            fd, self._fd = self._fd, None
        if fd is not None and self._fork == _forks:
            os.close(fd)

    # -- consuming ---------------------------------------------------------------

    def lock(self) -> bool:
        """Try to become this queue's one consumer (non-blocking).  Held until
        :meth:`unlock` or the process ends (even by SIGKILL)."""
        if self._lock_fd is not None:
            return True
        fd = os.open(os.path.join(self.directory, "deliver.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def segments(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if n.startswith(_PREFIX) and n.endswith(_SUFFIX))

    def pending(self) -> list[Batch]:
        """The undelivered records (up to :data:`READ_BYTES` per segment),
        oldest first.  Deletes segments that are delivered and abandoned;
        sets unreadable records aside in ``corrupt/``."""
        batches: list[Batch] = []
        horizon = None  # where the first segment read only in part stops
        for segment in self.segments():
            read, more = self._read_segment(segment)
            batches.extend(read)
            if more and read:
                horizon = min(horizon or read[-1].stamp, read[-1].stamp)
        if horizon is not None:
            # A segment read in part may hold older records than the others'
            # later ones: deliver only up to it, the rest on the next read.
            batches = [b for b in batches if b.stamp <= horizon]
        batches.sort(key=lambda b: (b.stamp, b.segment, b.start))
        return batches

    def _read_segment(self, segment: str) -> tuple[list[Batch], bool]:
        """The records from the segment's cursor on (at most READ_BYTES), and
        whether more follow."""
        path = os.path.join(self.directory, segment)
        offset = self._cursor(segment)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(READ_BYTES)
                more = bool(f.read(1))
        except FileNotFoundError:
            return [], False
        # The segment's name carries its first record's time: a record that
        # cannot be read takes its predecessor's, to keep its place.
        stamp = int(segment[len(_PREFIX):].split("-", 1)[0])
        batches, pos = [], 0
        while (newline := data.find(b"\n", pos)) >= 0:
            start, end = offset + pos, offset + newline + 1
            try:
                doc = json.loads(data[pos:newline])
                if not isinstance(doc, list) or not doc or type(doc[0]) is not int:
                    raise ValueError("not a queue record")
                stamp = doc[0]
                events = [Event.from_record(r) for r in doc[1:]]
            except ValueError as e:
                # An empty batch: acked without being sent.
                self._set_aside(segment, start, data[pos:newline], f"unreadable record ({e})")
                events = []
            batches.append(Batch(segment, start, end, stamp, events))
            pos = newline + 1
        tail = data[pos:]
        if not batches and self._abandoned(path):
            if tail:
                # No writer will finish it: cut short by a crash of the
                # machine before it was synced.
                self._set_aside(segment, offset, tail, "record cut short")
                self._set_cursor(segment, offset + len(tail))
            else:
                self._remove_segment(segment)  # delivered, and nobody writes to it
        return batches, more

    def _abandoned(self, path: str) -> bool:
        """Whether no process holds the segment open for writing."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def _remove_segment(self, segment: str) -> None:
        for path in (os.path.join(self.directory, segment), os.path.join(self.cursor_dir, segment)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _cursor(self, segment: str) -> int:
        try:
            with open(os.path.join(self.cursor_dir, segment), "rb") as f:
                return int(f.read() or 0)
        except (FileNotFoundError, ValueError):
            return 0  # never written, or lost in a crash: deliver again

    def _set_cursor(self, segment: str, offset: int) -> None:
        # Not fsynced: a cursor lost in a crash means delivering again, which
        # at-least-once allows.
        path = os.path.join(self.cursor_dir, segment)
        tmp = os.path.join(self.cursor_dir, _TMP + segment)
        with open(tmp, "wb") as f:
            f.write(str(offset).encode())
        os.replace(tmp, path)

    def ack(self, batch: Batch) -> None:
        """Mark ``batch`` delivered.  Batches of one segment are acked in order."""
        self._set_cursor(batch.segment, batch.end)

    def failed_attempts(self, batch: Batch) -> int:
        """How many attempts at ``batch`` failed so far, as last recorded by
        :meth:`record_failed_attempts` (in this process or before a restart)."""
        try:
            with open(os.path.join(self.directory, "attempts"), encoding="ascii") as f:
                name, count = f.read().split()
            return int(count) if name == batch.name else 0
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return 0

    def record_failed_attempts(self, batch: Batch, count: int) -> None:
        """Remember that ``count`` attempts at ``batch`` failed, so that a
        restart does not start ``maxattempts`` over.  Not fsynced: losing it
        only means counting again."""
        path = os.path.join(self.directory, "attempts")
        tmp = os.path.join(self.directory, _TMP + "attempts")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{batch.name} {count}\n")
        os.replace(tmp, path)

    def dead_letter(self, batch: Batch, attempts: int, error: str) -> str:
        """Write ``batch`` to ``deadletter/`` with why it was given up on (and
        sync it), then ack it; returns the dead-letter file's path."""
        path = os.path.join(self.deadletter_dir, batch.name + ".json")
        record = {
            "attempts": attempts,
            "error": error,
            "failedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "events": [e.to_dict() for e in batch.events],
        }
        tmp = os.path.join(self.deadletter_dir, _TMP + batch.name)
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.deadletter_dir)
        self.ack(batch)
        return path

    def _set_aside(self, segment: str, offset: int, raw: bytes, why: str) -> None:
        os.makedirs(self.corrupt_dir, exist_ok=True)
        name = f"{segment[:-len(_SUFFIX)]}-{offset:012d}"
        with open(os.path.join(self.corrupt_dir, name), "wb") as f:
            f.write(raw)
        log.error("notification queue %s: %s at byte %d of %s; set aside in %s",
                  self.directory, why, offset, segment, self.corrupt_dir)

    def remove_stale_tmp(self) -> None:
        """Delete segments a killed process created but never named (empty)."""
        for name in os.listdir(self.directory):
            if name.startswith(_TMP + _PREFIX) and self._abandoned(os.path.join(self.directory, name)):
                try:
                    os.unlink(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
