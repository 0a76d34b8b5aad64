"""Mark and sweep, online.

Phases, each one pass over its part of the store:

1. **lease**: take the lease (:mod:`cargohold.gc.lease`); the store's clock
   then is ``start``, and ``cutoff = start - grace``.  Markers a crashed
   collector left are resolved (links restored where the blob is still there).
2. **mark**: walk every repository once: tags, manifest revisions and
   referrer entries, reading each kept manifest once.  The digests reached
   (manifests, an index's children, configs, layers) go into one set.
   Without ``delete_untagged`` every revision is kept; with it, the roots are
   the tagged manifests and revisions younger than ``cutoff``, and the
   referrers of a kept manifest are kept too.
3. **manifests** (``delete_untagged`` only): revisions not kept are swept
   with the handshake below (their revision link and referrer entry are the
   links).
4. **scan**: list the blob store, one ``<alg>/<hex[:2]>`` fan-out directory
   at a time, with the use records of the same fan-out.  A blob is a
   candidate when it is not marked, its bytes are older than ``cutoff`` and
   its last recorded use too.  Use records older than ``cutoff`` whose blob
   is gone are removed.
5. **links**: list every repository's ``_layers`` once, noting the links of
   candidates.
6. **sweep**: candidates in batches, each with the handshake:
   (a) write ``condemned/<digest>`` holding the links about to go;
   (b) delete those links (requests can no longer find the blob);
   (c) read the use record again: a use newer than ``cutoff`` puts the links
   back and keeps the blob; (d) otherwise delete the blob's bytes and its use
   record; then remove the marker.  Nothing is deleted once the lease may
   have lapsed, or a marker has been up longer than half of
   :data:`cargohold.gc.usage.STALE_CONDEMNED`: the links go back instead.
7. **uploads**: purge upload sessions past the purge age.
8. **index**: rebuild the listing index (:mod:`cargohold.registry.catalog`)
   where the store uses one, so it lists what the run left.

Memory: the marked set holds one 64-bit hash per reachable digest (a false
match only keeps garbage; 66 MiB for a million), the scan one fan-out
directory's listing per worker, and the candidates their digest, size and
links, at most :data:`MAX_CANDIDATES` at a time: with more garbage than
that, scanning pauses to run phases 5 and 6 on what it has, then goes on.  Repositories, fan-out
directories and the candidates of a batch are worked on :data:`WORKERS` at a
time (object stores are latency-bound).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from cargohold.gc.lease import Lease, LeaseError
from cargohold.gc.usage import STALE_CONDEMNED
from cargohold.manifests import manifest_closure
from cargohold.registry.catalog import Listings, repositories
from cargohold.registry.uploads import Uploads
from cargohold.registry.blobs import BlobStore
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("cargohold.gc")

#: Candidates condemned together (a marker lives about as long as a batch).
BATCH = 64
#: Storage calls in flight at once: object stores answer in milliseconds, so
#: repositories, fan-out directories and a batch's candidates go in parallel.
WORKERS = 8
#: The scan stops to sweep once it holds this many candidates (about 30 MB).
MAX_CANDIDATES = 100_000

__all__ = ["Collector", "Progress", "Report", "LeaseError"]


@dataclasses.dataclass
class Report:
    """What a run did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    delete_untagged: bool = False
    grace: float = 0.0
    started: float = 0.0
    duration: float = 0.0
    repositories: int = 0
    manifests_marked: int = 0
    blobs_scanned: int = 0
    blobs_marked: int = 0
    blobs_swept: int = 0
    bytes_reclaimed: int = 0
    manifests_swept: int = 0
    links_swept: int = 0
    repositories_removed: int = 0
    uploads_purged: int = 0
    usage_records_swept: int = 0
    kept_in_use: int = 0
    recovered_markers: int = 0
    holder: str = ""
    #: Seconds spent in each phase.
    phases: dict = dataclasses.field(default_factory=dict)
    #: Storage calls made, by operation (when the driver counts them, as the
    #: core's :class:`~cargohold.storage.checked.CheckedDriver` does).
    storage_calls: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Progress:
    """Told about each phase; the CLI draws bars on a terminal.  The default
    does nothing."""

    def phase(self, name: str, total: int | None) -> None:
        """A phase starts, with ``total`` steps if known."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current phase are done."""

    def finish(self) -> None:
        """The run ended."""


@dataclasses.dataclass(slots=True)
class _Candidate:
    digest: str
    size: int
    #: (path, content) of every link the sweep removes, to restore them.
    links: list = dataclasses.field(default_factory=list)
    #: (repository, digest) for the delete events.
    events: list = dataclasses.field(default_factory=list)
    is_manifest: bool = False
    #: The scan saw a use record of it (older than the cutoff): the sweep
    #: removes it with the bytes.
    has_use_record: bool = False


def _walk_files(driver: StorageDriver, path: str) -> Iterator:
    try:
        for info in driver.walk(path):
            if not info.is_dir:
                yield info
    except PathNotFound:
        return


def _list(driver: StorageDriver, path: str) -> list[str]:
    try:
        return driver.list(path)
    except PathNotFound:
        return []


def _by_digest(cand: _Candidate) -> str:
    return cand.digest


def _leaf(path: str) -> str:
    return path.rpartition("/")[2]


class Collector:
    """One garbage collection run over ``driver``'s store (see the module
    docstring).  ``on_delete(repository, digest)`` is called for each
    manifest or blob link swept from a repository (the delete events)."""

    def __init__(self, driver: StorageDriver, grace: float, delete_untagged: bool = False,
                 dry_run: bool = False, upload_age: float | None = None,
                 on_delete: Callable[[str, str], None] | None = None, progress: Progress | None = None,
                 lease: Lease | None = None, batch: int = BATCH, workers: int = WORKERS,
                 max_candidates: int = MAX_CANDIDATES, listings: Listings | None = None):
        self.driver = driver
        self.listings = listings or Listings(driver)
        self.grace = grace
        self.delete_untagged = delete_untagged
        self.dry_run = dry_run
        self.upload_age = upload_age
        self.on_delete = on_delete or (lambda repository, digest: None)
        self.progress = progress or Progress()
        self.lease = lease or Lease(driver)
        self.batch = batch
        self.workers = workers
        self.max_candidates = max_candidates
        self._pool: ThreadPoolExecutor | None = None
        self.report = Report(dry_run=dry_run, delete_untagged=delete_untagged, grace=grace)
        self._marked: set[int] = set()
        self.cutoff = 0.0

    # -- the run ------------------------------------------------------------------

    def run(self) -> Report:
        """Collect once; raises :class:`LeaseError` when another collector
        holds the lease (or this one lost it)."""
        began = time.monotonic()
        stats = getattr(self.driver, "stats", None)
        calls_before = {op: count for op, (count, _) in dict(stats or {}).items()}
        self.lease.acquire()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gc")
        try:
            self.report.holder = self.lease.holder
            self.report.started = self.lease.started
            self.cutoff = self.lease.started - self.grace
            with self._timed("recover"):
                self._recover()
                repos = repositories(self.driver)
            self.report.repositories = len(repos)
            with self._timed("mark"):
                unkept = self._mark(repos)
            if self.delete_untagged:
                with self._timed("manifests"):
                    self._sweep(sorted(unkept, key=_by_digest), "manifests")
            for candidates in self._scan():
                with self._timed("links"):
                    self._links(repos, candidates)
                with self._timed("sweep"):
                    self._sweep(sorted(candidates.values(), key=_by_digest), "blobs")
            with self._timed("uploads"):
                self._purge_uploads()
                if not self.dry_run:
                    self.report.repositories_removed = len(set(repos) - set(repositories(self.driver)))
            if not self.dry_run and self.listings.indexed:
                with self._timed("index"):
                    self.listings.rebuild()
        finally:
            self._pool.shutdown(wait=True)
            self.lease.release()
            self.progress.finish()
            self.report.duration = time.monotonic() - began
            self.report.storage_calls = {op: count - calls_before.get(op, 0)
                                         for op, (count, _) in sorted(dict(stats or {}).items())
                                         if count > calls_before.get(op, 0)}
        return self.report

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        """Add the time the block takes to ``report.phases[phase]``."""
        start = time.monotonic()
        try:
            yield
        finally:
            phases = self.report.phases
            phases[phase] = round(phases.get(phase, 0.0) + time.monotonic() - start, 3)

    def _map(self, fn: Callable, items: Iterable) -> Iterator:
        """``fn`` over ``items`` on the pool, results in order."""
        return self._pool.map(fn, items)

    def _mark_digest(self, digest: str) -> None:
        self._marked.add(hash(digest))

    def is_marked(self, digest: str) -> bool:
        return hash(digest) in self._marked

    # -- leftovers of a crashed run -------------------------------------------------

    def _recover(self) -> None:
        for info in _walk_files(self.driver, paths.GC_CONDEMNED):
            digest = paths.digest_from_leaf_pair(info.path)
            try:
                links = json.loads(self.driver.get_content(info.path))
            except (PathNotFound, ValueError):
                links = []
            if not self.dry_run:
                try:
                    self.driver.stat(paths.blob_data(digest))
                    for path, content in links:
                        self.driver.put_content(path, content.encode())
                except PathNotFound:
                    pass  # the bytes went: so do the links
                self._drop(info.path)
            self.report.recovered_markers += 1

    # -- mark -----------------------------------------------------------------------

    def _mark(self, repos: list[str]) -> list[_Candidate]:
        """Mark what each repository keeps; returns its revisions that are
        not kept (only with ``delete_untagged``)."""
        self.progress.phase("mark", len(repos))
        unkept: list[_Candidate] = []
        for repo_unkept, manifests in self._map(self._mark_repository, repos):
            unkept += repo_unkept
            self.report.manifests_marked += manifests
            self.progress.advance()
        self.report.blobs_marked = len(self._marked)
        return unkept

    def _mark_repository(self, repo: str) -> tuple[list[_Candidate], int]:
        driver = self.driver
        revisions: dict[str, float] = {}
        for info in _walk_files(driver, paths.manifest_revisions(repo)):
            digest = paths.digest_from_link(info.path)
            if digest is not None:
                revisions[digest] = info.modtime
        tagged = []
        for tag_dir in _list(driver, paths.tags(repo)):
            try:
                tagged.append(driver.get_content(paths.tag_link(repo, _leaf(tag_dir))).decode())
            except PathNotFound:
                continue  # deleted meanwhile
        by_subject: dict[str, list[str]] = {}
        referrer_entry: dict[str, str] = {}
        for info in _walk_files(driver, paths.referrers(repo)):
            subject, referrer = paths.referrer_entry_digests(info.path)
            by_subject.setdefault(subject, []).append(referrer)
            referrer_entry[referrer] = info.path
        if self.delete_untagged:
            roots = tagged + [d for d, modtime in revisions.items() if modtime > self.cutoff]
        else:
            roots = tagged + list(revisions)
        kept, manifests = self._mark_from(roots, by_subject)
        unkept = []
        for digest in revisions:
            if digest in kept:
                continue
            cand = _Candidate(digest, 0, is_manifest=True)
            cand.links.append((paths.manifest_revision_link(repo, digest), digest))
            entry = referrer_entry.get(digest)
            if entry is not None:
                try:
                    cand.links.append((entry, driver.get_content(entry).decode()))
                except PathNotFound:
                    pass
            cand.events.append((repo, digest))
            unkept.append(cand)
        return unkept, manifests

    # -- scan the blob store ----------------------------------------------------------

    def _scan(self) -> Iterator[dict[str, _Candidate]]:
        """Candidates, in chunks of at most about :attr:`max_candidates`
        (each swept before the scan goes on, so memory stays bounded however
        much garbage there is)."""
        began = time.monotonic()
        fanouts = [(_leaf(alg_dir), _leaf(fan)) for alg_dir in _list(self.driver, paths.BLOBS)
                   for fan in _list(self.driver, alg_dir)]
        candidates: dict[str, _Candidate] = {}
        resume = True
        for start in range(0, len(fanouts), self.workers):
            if resume:  # at the start, and after each pause to sweep
                self.progress.phase("scan", len(fanouts))
                self.progress.advance(start)
                resume = False
            for found, scanned, stale in self._map(self._scan_fanout, fanouts[start:start + self.workers]):
                candidates.update(found)
                self.report.blobs_scanned += scanned
                self.report.usage_records_swept += stale
                self.progress.advance()
            if len(candidates) >= self.max_candidates or start + self.workers >= len(fanouts):
                self.report.phases["scan"] = round(self.report.phases.get("scan", 0.0) + time.monotonic() - began,
                                                   3)
                yield candidates
                candidates, resume = {}, True
                began = time.monotonic()
        if not fanouts:
            yield {}

    def _scan_fanout(self, fanout: tuple[str, str]) -> tuple[dict[str, _Candidate], int, int]:
        """Candidates of one ``<alg>/<hex[:2]>`` directory, how many blobs it
        holds, and how many stale use records of it were removed."""
        alg, fan = fanout
        present: dict[str, tuple[int, float]] = {}
        for info in _walk_files(self.driver, f"{paths.blob_prefixes(alg)}/{fan}"):
            digest = paths.digest_from_blob_data(info.path)
            if digest is not None:
                present[digest] = (info.size, info.modtime)
        used = {paths.digest_from_gc_used(info.path): info.modtime
                for info in _walk_files(self.driver, paths.gc_used_prefix(alg, fan))}
        found = {}
        for digest, (size, modtime) in present.items():
            if self.is_marked(digest) or modtime > self.cutoff or used.get(digest, 0.0) > self.cutoff:
                continue
            found[digest] = _Candidate(digest, size, has_use_record=digest in used)
        stale = [d for d, modtime in used.items() if d not in present and modtime <= self.cutoff]
        if not self.dry_run:
            for digest in stale:
                self._drop(paths.gc_used(digest))
        return found, len(present), len(stale)

    # -- find the candidates' links -------------------------------------------------------

    def _links(self, repos: list[str], candidates: dict[str, _Candidate]) -> None:
        self.progress.phase("links", len(repos))
        if not candidates:
            self.progress.advance(len(repos))
            return

        def linked(repo: str) -> list[tuple[str, str]]:
            found = []
            for alg_dir in _list(self.driver, paths.layers(repo)):
                for link_dir in _list(self.driver, alg_dir):
                    digest = paths.digest_from_leaf_pair(link_dir)
                    if digest in candidates:
                        found.append((repo, digest))
            return found

        for found in self._map(linked, repos):
            for repo, digest in found:
                cand = candidates[digest]
                cand.links.append((paths.layer_link(repo, digest), digest))
                cand.events.append((repo, digest))
            self.progress.advance()

    # -- sweep -----------------------------------------------------------------------------

    def _sweep(self, candidates: list[_Candidate], phase: str) -> None:
        self.progress.phase(phase, len(candidates))
        for i in range(0, len(candidates), self.batch):
            batch = candidates[i:i + self.batch]
            if self.dry_run:
                for cand in batch:
                    self._count(cand)
            else:
                self._sweep_batch(batch)
            self.progress.advance(len(batch))

    def _sweep_batch(self, batch: list[_Candidate]) -> None:
        driver = self.driver
        each = self._map
        if phase_manifests := batch[0].is_manifest:
            # Step 1 for revisions (blobs had theirs in the scan): recent use keeps them.
            in_use = self._used_since_cutoff([c.digest for c in batch])
            for digest in in_use:
                self._mark_closure(digest)
            batch = [c for c in batch if c.digest not in in_use]
            if not batch:
                return
        self.lease.check()
        condemned_at = time.monotonic()
        list(each(lambda c: driver.put_content(paths.gc_condemned(c.digest), json.dumps(c.links).encode()),
                  batch))                                          # (a) condemn
        # (b) unlink.  Files, not their directories (a link's or a blob's is
        # left empty and vanishes): on object stores a file is one request on
        # its key, a directory a listing more.
        list(each(lambda c: [self._drop(path) for path, _ in c.links], batch))
        doomed = []
        used_now = self._used_since_cutoff([c.digest for c in batch])
        for cand in batch:  # (c)
            if cand.digest in used_now:
                self._restore(cand)
                if cand.is_manifest:
                    self._mark_closure(cand.digest)
                self.report.kept_in_use += 1
            else:
                doomed.append(cand)
        if not self.lease.valid() or time.monotonic() - condemned_at > STALE_CONDEMNED / 2:
            list(each(self._restore, doomed))
            list(each(lambda c: self._drop(paths.gc_condemned(c.digest)), batch))
            self.lease.check()
            raise LeaseError("garbage collection stopped: a batch took too long; its links were restored")
        if not phase_manifests:                                    # (d) delete
            # A use record made since the scan would have kept the blob: only
            # one the scan saw can be there.
            list(each(lambda c: (self._drop(paths.blob_data(c.digest)),
                                 c.has_use_record and self._drop(paths.gc_used(c.digest))), doomed))
        for cand in doomed:
            self._count(cand)
            for repo, digest in cand.events:
                self.on_delete(repo, digest)
        list(each(lambda c: self._drop(paths.gc_condemned(c.digest)), batch))

    def _mark_from(self, roots: list[str], by_subject: dict[str, list[str]]) -> tuple[set[str], int]:
        """Mark the manifests ``roots``, what they name (children included)
        and, through ``by_subject``, their referrers; returns the manifests
        reached and how many of them could be read."""
        kept: set[str] = set()
        manifests = 0
        for digest, references in manifest_closure(roots, self._read_manifest, by_subject):
            kept.add(digest)
            self._mark_digest(digest)
            if references is None:
                continue
            manifests += 1
            for blob in references[0]:
                self._mark_digest(blob)
        return kept, manifests

    def _read_manifest(self, digest: str) -> bytes | None:
        try:
            return self.driver.get_content(paths.blob_data(digest))
        except PathNotFound:
            return None

    def _mark_closure(self, digest: str) -> None:
        """Mark what a manifest kept after all (a request relied on it during
        the run) names, children included, before the blob scan."""
        self._mark_from([digest], {})

    def _count(self, cand: _Candidate) -> None:
        if cand.is_manifest:
            self.report.manifests_swept += 1
        else:
            self.report.blobs_swept += 1
            self.report.bytes_reclaimed += cand.size
            self.report.links_swept += len(cand.links)

    def _used_since_cutoff(self, digests: list[str]) -> set[str]:
        """Those of ``digests`` used after the cutoff.  One walk per
        ``<alg>/<hex[:2]>`` fan-out of use records, not a ``stat`` per digest
        (a batch comes from the scan in digest order, so it spans few
        fan-outs; a missing file costs an object store a listing anyway)."""
        wanted: dict[str, set[str]] = {}
        for digest in digests:
            alg, _, hexpart = digest.partition(":")
            wanted.setdefault(paths.gc_used_prefix(alg, hexpart[:2]), set()).add(digest)

        def used(prefix: str) -> set[str]:
            return {d for info in _walk_files(self.driver, prefix)
                    if (d := paths.digest_from_gc_used(info.path)) in wanted[prefix] and info.modtime > self.cutoff}

        return set().union(*self._map(used, sorted(wanted)))

    def _restore(self, cand: _Candidate) -> None:
        for path, content in cand.links:
            self.driver.put_content(path, content.encode())

    def _drop(self, path: str) -> None:
        try:
            self.driver.delete(path)
        except PathNotFound:
            pass

    # -- uploads ---------------------------------------------------------------------------

    def _purge_uploads(self) -> None:
        if self.upload_age is None:
            return
        self.progress.phase("uploads", None)
        uploads = Uploads(self.driver, BlobStore(self.driver))
        self.report.uploads_purged = len(uploads.purge(self.upload_age, dry_run=self.dry_run))
