"""Blob upload sessions: start, append chunks, finish (verify + move), cancel, purge.

Bytes stream into ``_uploads/<id>/data`` and are hashed on the way.  Only when
the client's digest matches the received bytes does the data move to the
blob store, so a half-written or corrupt upload is never visible as a blob.

A session's state lives in storage (its data file and ``startedat``), so any
worker process can continue it.  The running hash is an in-process
optimisation: when the next chunk lands on another process (or after a
restart) the digest is recomputed from storage at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from typing import Callable, Iterable

from cargohold.blocking import concurrently, offload, start
from cargohold.errors import BlobUploadInvalid, BlobUploadUnknown, DigestInvalid, RangeInvalid, SizeInvalid
from cargohold.lru import LRU
from cargohold.reference import algorithm_of, new_hasher
from cargohold.registry.blobs import BlobStore
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger(__name__)

#: A check run between an upload's verification and its commit:
#: ``(digest, size)``, raising to refuse (see ``cargohold_before_blob_commit``).
BeforeCommit = Callable[[str, int], None]

# Chunks at least this large are hashed in the thread pool (see _pump).
OFFLOAD_HASH = 256 * 1024

UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Uploads:
    def __init__(self, driver: StorageDriver, blobs: BlobStore):
        self.driver = driver
        self.blobs = blobs
        # upload id -> (bytes hashed, hasher); see the module docstring.
        self._hashers = LRU(1024)

    # -- session lifecycle -------------------------------------------------

    def start(self, name: str, algorithm: str = "sha256") -> str:
        upload_id = str(uuid.uuid4())
        state = {"startedat": dt.datetime.now(dt.timezone.utc).isoformat(), "algorithm": algorithm}
        # Volatile: a session that has received nothing is not worth an
        # fsync.  Lost in a power failure, it is BLOB_UPLOAD_UNKNOWN to the
        # client, which starts over (as after a purge).  The first chunk's
        # commit fsyncs the session directory, which makes it durable too.
        self.driver.put_volatile(paths.upload_startedat(name, upload_id), json.dumps(state).encode())
        return upload_id

    def _state(self, name: str, upload_id: str) -> dict:
        if not UPLOAD_ID_RE.fullmatch(upload_id):
            raise BlobUploadUnknown(detail={"uuid": upload_id[:100]})
        try:
            return json.loads(self.driver.get_content(paths.upload_startedat(name, upload_id)))
        except PathNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        except ValueError:
            raise BlobUploadInvalid("upload state is corrupt", detail={"uuid": upload_id})

    def size(self, name: str, upload_id: str) -> int:
        """Bytes received so far; BLOB_UPLOAD_UNKNOWN if no such session."""
        self._state(name, upload_id)
        return self._data_size(name, upload_id)

    def _data_size(self, name: str, upload_id: str) -> int:
        try:
            return self.driver.stat(paths.upload_data(name, upload_id)).size
        except PathNotFound:
            return 0

    def cancel(self, name: str, upload_id: str) -> None:
        self._state(name, upload_id)
        self._hashers.pop(upload_id)
        try:
            self.driver.delete_volatile(paths.upload_dir(name, upload_id))
        except PathNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id})

    # -- data ---------------------------------------------------------------

    def append(self, name: str, upload_id: str, chunks: Iterable[bytes],
               start: int | None = None, length: int | None = None) -> int:
        """Append a request body.  ``start`` (from ``Content-Range``) must
        equal the current size, else 416.  ``length`` (``Content-Length``)
        must match the bytes received.  Returns the new total size."""
        state = self._state(name, upload_id)
        current = self._data_size(name, upload_id)
        if start is not None and start != current:
            raise RangeInvalid(
                f"chunk starts at {start} but the upload has {current} bytes",
                detail={"expected": current, "got": start},
            )
        cached = self._hashers.pop(upload_id)
        hasher = None
        if current == 0:
            hasher = new_hasher(state.get("algorithm", "sha256"))
        elif cached is not None and cached[0] == current:
            hasher = cached[1]
        path = paths.upload_data(name, upload_id)
        writer = self.driver.writer(path, append=current > 0)
        try:
            received = _pump(chunks, writer, hasher)
            if length is not None and received != length:
                raise SizeInvalid(f"received {received} bytes, Content-Length said {length}")
            writer.commit()
        except BaseException:
            writer.cancel()
            raise
        finally:
            writer.close()
        total = current + received
        if hasher is not None:
            self._hashers.put(upload_id, (total, hasher))
        return total

    def put_whole(self, name: str, digest: str, chunks: Iterable[bytes], length: int | None = None,
                  before_commit: BeforeCommit | None = None) -> int:
        """Store a blob that arrives whole in one request (monolithic
        ``POST ?digest=``, or a ``PUT`` carrying the entire body) straight
        into the blob store.  A new-file writer stays invisible until
        ``commit``, which happens only once the digest matches, so no session
        files are needed.  The bytes are written even when the blob seems
        stored already: only at the end (:meth:`BlobStore.claim`) is that
        known for sure, as the garbage collector may be removing it.  When it
        is there, the new copy is dropped.  ``before_commit(digest, size)``
        runs once the digest matched, before anything is committed or
        linked; if it raises, the bytes are dropped.  Returns the size.

        The disk waits overlap: the collector's use record is written while
        the body streams in, and the repository's link while the blob
        commits (both are fsynced; the client's 201 comes after both).  A
        crash between the two may leave a link to bytes not yet stored,
        which reads as an unknown blob until the client pushes it again."""
        touched = start(self.blobs.usage.touch, digest, True)
        hasher = new_hasher(algorithm_of(digest))
        writer = self.driver.writer(paths.blob_data(digest))
        try:
            received = _pump(chunks, writer, hasher)
            if length is not None and received != length:
                raise SizeInvalid(f"received {received} bytes, Content-Length said {length}")
            actual = f"{hasher.name}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestInvalid(detail={"expected": digest, "actual": actual})
            if before_commit is not None:
                before_commit(digest, received)
            touched.wait()
            if self.blobs.claim(digest, touched=True):
                writer.cancel()
                self.blobs.link(name, digest)
            else:
                concurrently(writer.commit, lambda: self.blobs.link(name, digest))
        except BaseException:
            writer.cancel()
            raise
        finally:
            writer.close()
            touched.wait_quietly()
        self.blobs.remember_size(digest, received)
        return received

    def finish(self, name: str, upload_id: str, digest: str, expected_size: int | None = None,
               before_commit: BeforeCommit | None = None) -> int:
        """Verify the received bytes against ``digest`` and move them into
        the blob store, then link the blob into ``name`` and end the session.
        On a mismatch the session is removed and DIGEST_INVALID raised: no
        blob becomes visible.  ``before_commit(digest, size)`` runs once the
        digest matched, before the move; if it raises, the session is
        removed in the same way.  Returns the blob size."""
        self._state(name, upload_id)
        path = paths.upload_data(name, upload_id)
        size = self._data_size(name, upload_id)
        if size == 0:
            try:
                self.driver.stat(path)
            except PathNotFound:
                # Nothing was ever written: an empty blob.
                self.driver.put_content(path, b"")
        if expected_size is not None and expected_size != size:
            raise SizeInvalid(f"upload has {size} bytes, expected {expected_size}")
        actual = self._digest(name, upload_id, path, size, algorithm_of(digest))
        if actual != digest:
            self.discard(name, upload_id)
            raise DigestInvalid(detail={"expected": digest, "actual": actual})
        if before_commit is not None:
            try:
                before_commit(digest, size)
            except BaseException:
                self.discard(name, upload_id)
                raise
        if not self.blobs.claim(digest):
            # The link's fsyncs overlap the move's (see put_whole).
            concurrently(lambda: self.driver.move(path, paths.blob_data(digest)),
                         lambda: self.blobs.link(name, digest))
        else:  # another upload committed the same bytes first; keep that copy.
            self.blobs.link(name, digest)
        self.blobs.remember_size(digest, size)
        self.discard(name, upload_id)
        return size

    def _digest(self, name: str, upload_id: str, path: str, size: int, alg: str) -> str:
        cached = self._hashers.pop(upload_id)
        if cached is not None and cached[0] == size and cached[1].name == alg:
            return f"{alg}:{cached[1].hexdigest()}"
        hasher = new_hasher(alg)
        with self.driver.reader(path, 0) as reader:
            while True:
                chunk = reader.read(1 << 20)
                if not chunk:
                    break
                hasher.update(chunk)
        return f"{alg}:{hasher.hexdigest()}"

    def discard(self, name: str, upload_id: str) -> None:
        """End a session, dropping whatever it received (no error if gone)."""
        self._hashers.pop(upload_id)
        try:
            # Volatile: a finished or cancelled session that a power failure
            # brings back is unused garbage, removed by the upload purge.
            self.driver.delete_volatile(paths.upload_dir(name, upload_id))
        except PathNotFound:
            pass

    # -- maintenance --------------------------------------------------------

    def purge(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Delete upload sessions started more than ``older_than`` seconds ago.
        Returns the purged session directories."""
        cutoff = time.time() - older_than
        purged = []
        for upload_dir in self._all_upload_dirs():
            try:
                age_ok = _started_at(self.driver.get_content(paths.startedat_in(upload_dir))) < cutoff
            except PathNotFound:
                # No state file: a session that never finished starting, or one
                # that just finished (gone by now).
                try:
                    age_ok = self.driver.stat(upload_dir).modtime < cutoff
                except PathNotFound:
                    continue
            except (ValueError, KeyError, TypeError):
                age_ok = True
            if age_ok:
                purged.append(upload_dir)
                if not dry_run:
                    try:
                        self.driver.delete(upload_dir)
                    except PathNotFound:
                        pass
        if purged:
            log.info("purged %d upload session(s)%s", len(purged), " (dry run)" if dry_run else "")
        return purged

    def _all_upload_dirs(self):
        stack = [paths.REPOSITORIES]
        while stack:
            d = stack.pop()
            try:
                children = self.driver.list(d)
            except PathNotFound:
                continue
            for child in children:
                if paths.is_uploads(child):
                    try:
                        yield from self.driver.list(child)
                    except PathNotFound:
                        pass
                elif paths.may_hold_repositories(child):
                    stack.append(child)


def _pump(chunks: Iterable[bytes], writer, hasher) -> int:
    """Write each chunk of a request body to ``writer`` and hash it, while
    the next chunk is being received: one chunk is stored (written and
    hashed in the thread pool, where ``hashlib`` runs without the GIL) as
    the next one arrives from the socket.  Returns the bytes received."""
    received = 0
    pending = None
    try:
        for chunk in chunks:
            if pending is not None:
                pending.wait()
            pending = start(_store, writer, hasher, chunk)
            received += len(chunk)
        if pending is not None:
            done, pending = pending, None
            done.wait()
    finally:
        if pending is not None:  # the body failed: let the last write end first
            pending.wait_quietly()
    return received


def _store(writer, hasher, chunk: bytes) -> None:
    writer.write(chunk)
    if hasher is not None:
        if len(chunk) >= OFFLOAD_HASH:
            offload(hasher.update, chunk)
        else:
            hasher.update(chunk)


def _started_at(raw: bytes) -> float:
    """When a session started, from its ``startedat`` file: cargohold's JSON
    state, or the bare RFC 3339 time the reference registry writes (so its
    sessions in a shared storage are purged by age too).  ``ValueError``,
    ``KeyError`` or ``TypeError`` for anything else."""
    text = raw.decode().strip()
    started = json.loads(text)["startedat"] if text.startswith("{") else text
    return dt.datetime.fromisoformat(started).timestamp()
