"""The registry's side of the garbage collector's handshake.

Both sides write, then read (a Dekker-style handshake through the store):

* a registry request that is about to rely on a blob or manifest existing
  first records a *use* of its digest (:meth:`UsageRecorder.touch` rewrites
  ``/cargohold/gc/used/<digest>``, so the file's modtime is the time of the
  last use), and only then checks that it exists;
* the collector first *condemns* a candidate (writes
  ``/cargohold/gc/condemned/<digest>``, then removes the repository links
  through which requests find it), and only then reads the use record again.
  A use newer than the grace window makes it put the links back.

So either the collector sees the request's use (and keeps the digest), or
the request's existence check comes after the links were removed (and the
client is told the blob is unknown, and uploads it again).  While a digest is
condemned, a request that finds it missing waits for the collector to settle
(:meth:`UsageRecorder.wait_settled`) and looks again, so a push never fails
just because it met the collector halfway.  See the README's "Garbage
collection" section for the whole argument.
"""

from __future__ import annotations

import time

from cargohold.lru import LRU
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver

#: ``storage.maintenance.gc.grace`` when nothing else is configured (seconds).
DEFAULT_GRACE = 3600.0
#: A condemned marker older than this was left by a collector that died
#: mid-batch; requests stop waiting for it.  The collector never keeps one
#: longer than half of it (it restores the links instead).
STALE_CONDEMNED = 120.0
#: Seconds between looks at a condemned marker while waiting for it to go.
SETTLE_POLL = 0.05
#: Digests whose last use each process remembers.
REMEMBERED = 65536


class UsageRecorder:
    """Records uses of digests for the collector, one per process.

    :meth:`touch` skips the write when this process recorded the same digest
    less than ``grace / 2`` ago (a bounded LRU of when it did): the record
    is then still newer than any collector's ``start - grace``.  Writes that
    precede storing content (``force=True``) are never skipped.
    """

    def __init__(self, driver: StorageDriver, grace: float = DEFAULT_GRACE):
        self.driver = driver
        self.grace = grace
        self._skip = grace / 2
        self._written = LRU(REMEMBERED)

    def touch(self, digest: str, force: bool = False) -> bool:
        """Record that a request relies on ``digest`` now; call it *before*
        the existence check the request acts on.  Returns whether it wrote
        (False: skipped, an earlier write of this process still counts, and
        every check since came after it)."""
        now = time.monotonic()
        if not force:
            last = self._written.get(digest)
            if last is not None and now - last < self._skip:
                return False
        self.driver.put_content(paths.gc_used(digest), b"")
        self._written.put(digest, now)
        return True

    def check(self, digest: str, exists) -> bool:
        """Whether ``exists()`` (a link or revision of ``digest``), for a
        request that acts on the answer.  A first look filters out what is
        missing (no write for a blob about to be uploaded); then the use is
        recorded and the answer is the look that follows the record.  A
        digest missing because a collector is condemning it is looked for
        again once the collector has settled."""
        if not exists() and not (self.wait_settled(digest) and exists()):
            return False
        if not self.touch(digest) or exists():
            return True
        return self.wait_settled(digest) and exists()

    def wait_settled(self, digest: str) -> bool:
        """When a collector has ``digest`` condemned, wait until it restored
        or removed it (its marker is gone, or stale); returns whether it had.
        Costs one ``stat`` when nothing is condemned."""
        path = paths.gc_condemned(digest)
        waited = False
        while True:
            try:
                info = self.driver.stat(path)
            except PathNotFound:
                return waited
            if time.time() - info.modtime > STALE_CONDEMNED:
                return waited
            waited = True
            time.sleep(SETTLE_POLL)
