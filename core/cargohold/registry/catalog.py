"""Listing the repositories of the registry and the tags of each.

Two sources give the same answers:

* **Walking** the reference layout: ``repositories/`` for the catalog (a
  ``list`` per directory), ``<name>/_manifests/tags/`` for the tags.  Cheap
  on a local disk; on an object store it costs a request per repository, and
  a request per thousand tags, on every page.
* **The listing index** (:class:`IndexedList`), kept by the registry in the
  store itself under ``/cargohold/index`` (see :mod:`cargohold.storage.paths`):
  the catalog and each repository's tags as one sorted list object per
  generation.  A page costs one ``list`` of a directory holding one or two
  objects, plus one read when another process changed the list since this one
  last read it, whatever the number of repositories or tags.

:class:`Listings` picks the source (``storage.listing.mode``), keeps the
index up to date on push and delete, falls back to walking (and rebuilds)
when the index is missing or unreadable, and :meth:`Listings.rebuild` redoes
it all from the layout (``cargohold index rebuild``, and every garbage
collection).  The reference layout stays untouched, so the reference registry
still reads (and writes) the same store; after the reference registry or an
older cargohold wrote to it, rebuild the index.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from cargohold.lru import LRU
from cargohold.storage import paths
from cargohold.storage.driver import FileExists, PathNotFound, StorageDriver, StorageError
from cargohold.storage.listcache import ListingCache

log = logging.getLogger("cargohold.listing")

#: ``storage.listing.mode`` values.
MODES = ("auto", "index", "walk")
#: Times a change is tried again after another process wrote the generation
#: it meant to write.
UPDATE_ATTEMPTS = 40
#: Reads tried again when the generation listed was replaced and removed
#: before it could be read.
READ_ATTEMPTS = 5
#: Seconds an older generation outlives a newer one before it is deleted
#: (see :class:`IndexedList`).
PRUNE_AGE = 300.0
#: Generations read one after the other past a cached list before listing
#: them instead.
PROBES = 2
#: Index lists (and their generation) each process keeps decoded.
CACHED_LISTS = 4096
#: Repositories rebuilt at once by :meth:`Listings.rebuild`.
REBUILD_WORKERS = 16
FORMAT = 1


def repositories(driver: StorageDriver) -> list[str]:
    """Every repository name, in lexical order, by walking the layout.  A
    repository is a directory below ``repositories/`` holding ``_manifests``
    or ``_layers``; names may nest (``org/team/app``), so the walk descends
    into every directory whose name does not start with ``_``."""
    found = []
    stack = [paths.REPOSITORIES]
    while stack:
        d = stack.pop()
        try:
            children = driver.list(d)
        except PathNotFound:
            continue
        is_repo = False
        for child in children:
            leaf = child.rpartition("/")[2]
            if leaf.startswith(paths.LAYOUT_DIR_PREFIX):
                if leaf in paths.REPOSITORY_MARKERS:
                    is_repo = True
            else:
                stack.append(child)
        if is_repo:
            found.append(paths.repository_from_dir(d))
    found.sort()
    return found


def iter_repositories(driver: StorageDriver, last: str | None = None) -> Iterator[str]:
    """The repository names after ``last`` (all with ``None``), lazily and
    in the lexical order of :func:`repositories`: a page of ``n`` names
    lists about ``n`` directories, not the whole store.

    Every directory is a heap entry keyed by its own name, expanded (listed)
    when it is the smallest key left: its name, if it is a repository, is
    then the smallest still to come, and its children's names are larger.
    A directory whose whole subtree sorts at or before ``last`` is never
    listed."""
    prefix = paths.REPOSITORIES + "/"
    heap: list[tuple[str, bool]] = []  # (name, is a repository to yield); False: a directory to expand

    def expand(d: str) -> None:
        try:
            children = driver.list(paths.REPOSITORIES + "/" + d if d else paths.REPOSITORIES)
        except PathNotFound:
            return
        for child in children:
            leaf = child.rpartition("/")[2]
            if leaf.startswith("_"):
                if leaf in paths.REPOSITORY_MARKERS and d and (last is None or d > last):
                    heapq.heappush(heap, (d, True))
                continue
            name = child[len(prefix):]
            # Skip a subtree that sorts wholly at or before last: name itself
            # and every name/..., when last is past name + "/" without being
            # inside it.
            if last is not None and name < last and last > name + "/" and not last.startswith(name + "/"):
                continue
            heapq.heappush(heap, (name, False))

    expand("")
    seen = None
    while heap:
        name, is_repository = heapq.heappop(heap)
        if is_repository:
            if name != seen:  # _manifests and _layers both mark it
                seen = name
                yield name
        else:
            expand(name)


def walk_tags(driver: StorageDriver, name: str, cache: ListingCache | None = None) -> list[str] | None:
    """The tags of ``name`` by listing its tags directory (through ``cache``
    if given); ``None`` when the repository does not exist."""
    try:
        if cache is not None:
            return cache.names(paths.tags(name))
        return [p.rpartition("/")[2] for p in driver.list(paths.tags(name))]
    except PathNotFound:
        try:
            driver.stat(paths.repository(name))
            return []
        except PathNotFound:
            return None


def scan_layout(driver: StorageDriver) -> dict[str, list[str] | None]:
    """Every repository and its tags from one :meth:`StorageDriver.walk` of
    ``repositories/``: what :func:`repositories` and :func:`walk_tags` say,
    in a few requests per thousand stored files on object stores (whose walk
    is one recursive listing) instead of one per directory."""
    found: dict[str, set[str]] = {}
    try:
        for info in driver.walk(paths.REPOSITORIES):
            entry = paths.repository_entry(info.path)
            if entry is None:
                continue
            name, marker, rest = entry
            if marker in paths.REPOSITORY_MARKERS:
                tags = found.setdefault(name, set())
                tag = paths.tag_from_entry(marker, rest)
                if tag is not None:
                    tags.add(tag)
    except PathNotFound:
        pass
    return {name: sorted(tags) for name, tags in sorted(found.items())}


class CorruptIndex(ValueError):
    """An index object that is not a list this module wrote."""


class IndexedList:
    """A sorted list of names stored as generations under ``directory``.

    Generation ``g`` is the object ``<directory>/<g, 12 digits>`` holding
    ``{"format": 1, "names": [...]}``; the highest generation is the list.

    Writing.  A change reads the highest generation ``g``, applies itself
    and writes ``g + 1`` with the driver's conditional
    :meth:`StorageDriver.create`.  Of several processes changing the list at
    once exactly one wins each generation; the others apply their change
    again on top of the winner's, so no change is lost however many
    registries share the store.  Generations are created in order (``g + 1``
    only by a writer that saw ``g``), and an old one is deleted only once a
    newer one is :data:`PRUNE_AGE` younger (by the store's clock), so a
    writer that saw ``g`` less than ``PRUNE_AGE`` ago cannot re-create a
    ``g + 1`` that existed and was deleted: its write either lands on top or
    fails.  (A writer that stalled longer checks afterwards and applies its
    change again on top of what is there.)

    Reading.  Each process keeps the lists it read, with their generation.
    While one was known to be the newest less than ``PRUNE_AGE / 2`` ago, a
    read finding no ``g + 1`` proves it still is (a ``g + 1`` made since
    could not have been deleted yet): a page costs one ``GetObject`` that
    finds nothing.  When ``g + 1`` is there, that read was the new list,
    and a read of ``g + 2`` finding nothing proves it the newest.  Otherwise
    one ``list`` of the directory and one read of the newest generation.

    A missing list (no generation) or an unreadable one is built from
    ``walk()``, the same answer from the reference layout: the generations
    are noted *before* walking and the result written as the next one, so a
    change that a concurrent writer made after the walk either lands on top
    of the rebuilt list or makes the write fail and the walk start again.
    """

    def __init__(self, driver: StorageDriver, directory: str, cache: LRU):
        self.driver = driver
        self.directory = directory
        self._cache = cache

    # -- reading --------------------------------------------------------------------

    def generations(self) -> list[tuple[int, float]]:
        """``(generation, modtime)`` of the generations present, lowest first."""
        found = []
        try:
            for info in self.driver.walk(self.directory):
                gen = None if info.is_dir else paths.index_generation_number(info.path)
                if gen is not None:
                    found.append((gen, info.modtime))
        except PathNotFound:
            pass
        return sorted(found)

    def _path(self, generation: int) -> str:
        return paths.index_generation(self.directory, generation)

    def _remember(self, generation: int, names: list[str], newest_at: float) -> None:
        self._cache.put(self.directory, (generation, names, newest_at))

    def _parse(self, generation: int, raw: bytes) -> list[str]:
        try:
            doc = json.loads(raw)
            names = doc["names"] if doc.get("format") == FORMAT else None
        except (ValueError, AttributeError, KeyError, TypeError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
                or any(a >= b for a, b in zip(names, names[1:])):
            raise CorruptIndex(f"{self._path(generation)} is not a listing index")
        return names

    def _load(self, generation: int, newest_at: float) -> list[str]:
        """The names of one generation, known to be the newest at
        ``newest_at`` (``time.monotonic()``); :class:`PathNotFound` when it
        was removed meanwhile, :class:`CorruptIndex` when unreadable."""
        hit = self._cache.get(self.directory)
        if hit is not None and hit[0] == generation:
            self._remember(generation, hit[1], newest_at)
            return hit[1]
        names = self._parse(generation, self.driver.get_content(self._path(generation)))
        self._remember(generation, names, newest_at)
        return names

    def _cached(self) -> list[str] | None:
        """The cached list, or the one or two generations written after it,
        if that is provably the newest: a read of the generation after it
        finds nothing (a read, not a stat: on object stores a missing key
        is one request either way, and a stat may list a "directory")."""
        hit = self._cache.get(self.directory)
        if hit is None:
            return None
        generation, names, newest_at = hit
        for _ in range(PROBES):
            now = time.monotonic()
            if now - newest_at >= PRUNE_AGE / 2:
                return None
            try:
                raw = self.driver.get_content(self._path(generation + 1))
            except PathNotFound:
                self._remember(generation, names, now)
                return names
            try:
                generation, names = generation + 1, self._parse(generation + 1, raw)
            except CorruptIndex:
                return None
        return None

    def read(self) -> list[str] | None:
        """The list, or ``None`` when there is none or it is unreadable."""
        names = self._cached()
        if names is not None:
            return names
        for _ in range(READ_ATTEMPTS):
            listed_at = time.monotonic()
            gens = self.generations()
            if not gens:
                return None
            try:
                return self._load(gens[-1][0], listed_at)
            except PathNotFound:
                continue  # replaced and removed between the list and the read
            except CorruptIndex as exc:
                log.warning("listing index unreadable, walking instead: %s", exc)
                return None
        return None

    # -- writing --------------------------------------------------------------------

    def write_after(self, gens: list[tuple[int, float]], names: list[str], listed_at: float) -> bool:
        """Write ``names`` as the generation after the newest of ``gens``
        (listed at ``listed_at``, ``time.monotonic()``); False when another
        process wrote that generation first, or when this one stalled so
        long that the generation it wrote may be an old one re-created."""
        head, head_modtime = gens[-1] if gens else (0, 0.0)
        data = json.dumps({"format": FORMAT, "names": names}, separators=(",", ":")).encode()
        try:
            self.driver.create(self._path(head + 1), data)
        except FileExists:
            return False
        if time.monotonic() - listed_at >= PRUNE_AGE / 2:
            newer = [g for g, _ in self.generations() if g > head + 1]
            if newer:
                log.warning("listing index %s: a write stalled for over %gs; applying it again",
                            self.directory, PRUNE_AGE / 2)
                return False
        self._remember(head + 1, names, listed_at)
        for old, modtime in gens[:-1]:
            if head_modtime - modtime > PRUNE_AGE:
                try:
                    self.driver.delete(self._path(old))
                except PathNotFound:
                    pass  # another writer pruned it
        return True

    def update(self, add: Iterable[str] = (), remove: Iterable[str] = (),
               walk: Callable[[], list[str] | None] = lambda: None) -> None:
        """Add and remove names (after the layout was changed).  When there
        is no readable list yet it is built from ``walk()`` (``None``: leave
        it missing)."""
        add, remove = set(add), set(remove)
        for attempt in range(UPDATE_ATTEMPTS):
            listed_at = time.monotonic()
            gens = self.generations()
            names = None
            if gens:
                try:
                    names = self._load(gens[-1][0], listed_at)
                except PathNotFound:
                    continue
                except CorruptIndex as exc:
                    log.warning("listing index unreadable, rebuilding it: %s", exc)
            current = names
            if names is None:
                names = walk()
                if names is None:
                    return
            new = sorted((set(names) | add) - remove)
            if new == current:
                return
            if self.write_after(gens, new, listed_at):
                return
            _backoff(attempt)
        raise StorageError(f"listing index {self.directory}: still contended after {UPDATE_ATTEMPTS} attempts; "
                           "`cargohold index rebuild` repairs it", path=self.directory)

    def rebuild(self, walk: Callable[[], list[str] | None]) -> list[str] | None:
        """Replace the list with ``walk()`` (``None``: remove the list) and
        return what was written."""
        for attempt in range(UPDATE_ATTEMPTS):
            listed_at = time.monotonic()
            gens = self.generations()
            names = walk()
            if names is None:
                self.drop()
                return None
            names = sorted(set(names))
            if self.write_after(gens, names, listed_at):
                return names
            _backoff(attempt)
        raise StorageError(f"listing index {self.directory}: still contended after {UPDATE_ATTEMPTS} attempts",
                           path=self.directory)

    def drop(self) -> None:
        try:
            self.driver.delete(self.directory)
        except PathNotFound:
            pass
        self._cache.pop(self.directory)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.002 * (1 << min(attempt, 7))))


class Listings:
    """The catalog and tags lists of a store, from the listing index or by
    walking (see the module docstring).  ``mode`` is ``storage.listing.mode``:
    ``index``, ``walk``, or ``auto``: the index on stores that are not on a
    local disk (:meth:`StorageDriver.local_directory` is ``None``) and can
    create files conditionally.

    The registry calls :meth:`repository_used` after writing a link or a
    manifest into a repository and :meth:`tags_changed` after writing or
    deleting tags; both are no-ops when walking.
    """

    def __init__(self, driver: StorageDriver, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"storage.listing.mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.driver = driver
        self.mode = mode
        self._cache = LRU(CACHED_LISTS)
        self._catalog = IndexedList(driver, paths.INDEX_CATALOG, self._cache)
        self._enabled: bool | None = None if mode == "auto" else mode == "index"
        #: Walking: directory listings reused while unchanged (local disks).
        self._walk_cache = ListingCache(driver)

    @property
    def indexed(self) -> bool:
        """Whether lists come from the index."""
        if self._enabled is None:
            self._enabled = self.driver.local_directory() is None and _can_create(self.driver)
        return self._enabled

    def _tags_index(self, name: str) -> IndexedList:
        return IndexedList(self.driver, paths.index_tags(name), self._cache)

    # -- reading --------------------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Every repository name, in lexical order."""
        if not self.indexed:
            return repositories(self.driver)
        names = self._catalog.read()
        if names is None:
            names = self._catalog.rebuild(self._walk_repositories)
        return names

    def _walk_repositories(self) -> list[str]:
        return list(scan_layout(self.driver))

    def tags(self, name: str) -> list[str] | None:
        """The tags of ``name`` in lexical order; ``None`` when there is no
        such repository."""
        if not self.indexed:
            return walk_tags(self.driver, name, self._walk_cache)
        index = self._tags_index(name)
        names = index.read()
        if names is None:
            names = index.rebuild(lambda: walk_tags(self.driver, name))
        return names

    # -- keeping the index ------------------------------------------------------------------

    def repository_used(self, name: str) -> None:
        """A link or manifest was just written into ``name``."""
        if not self.indexed:
            return
        names = self._catalog.read()
        if names is not None:
            i = bisect.bisect_left(names, name)
            if i < len(names) and names[i] == name:
                return
        self._catalog.update(add=[name], walk=self._walk_repositories)

    def tags_changed(self, name: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
        """Tags of ``name`` were just written (``added``) or deleted."""
        if not self.indexed:
            return
        self._tags_index(name).update(added, removed, walk=lambda: walk_tags(self.driver, name))

    # -- repair -------------------------------------------------------------------------------

    def _generations(self) -> dict[str, list[tuple[int, float]]]:
        """The generations of every list in the index, by directory, from
        one walk of it."""
        found: dict[str, list[tuple[int, float]]] = {}
        try:
            for info in self.driver.walk(paths.INDEX):
                gen = None if info.is_dir else paths.index_generation_number(info.path)
                if gen is not None:
                    found.setdefault(info.path.rpartition("/")[0], []).append((gen, info.modtime))
        except PathNotFound:
            pass
        return {d: sorted(g) for d, g in found.items()}

    def rebuild(self) -> dict:
        """Rebuild the whole index from the layout: the catalog, the tags of
        every repository, and no list for repositories that are gone.
        Returns counts (``repositories``, ``tags``, ``dropped``).

        Two walks (the index's generations, then the layout) and a write per
        list.  Each list follows :meth:`IndexedList.rebuild`'s rule: its
        generations were read before the layout was, so a list that a
        registry changed meanwhile is rebuilt again on its own."""
        listed_at = time.monotonic()
        heads = self._generations()
        layout = scan_layout(self.driver)
        names = list(layout)
        if not self._catalog.write_after(heads.get(self._catalog.directory, []), names, listed_at):
            names = self._catalog.rebuild(self._walk_repositories) or []

        def tags_list(name: str) -> int:
            index = self._tags_index(name)
            tags = layout.get(name)
            if tags is None or not index.write_after(heads.get(index.directory, []), tags, listed_at):
                tags = index.rebuild(lambda: walk_tags(self.driver, name))
            return len(tags or ())

        indexed = {paths.repository_from_index_tags(d) for d in heads} - {None}
        gone = sorted(indexed - set(names))
        with ThreadPoolExecutor(max_workers=REBUILD_WORKERS, thread_name_prefix="reindex") as pool:
            tags = sum(pool.map(tags_list, names))
            list(pool.map(lambda n: self._tags_index(n).drop(), gone))
        return {"repositories": len(names), "tags": tags, "dropped": len(gone)}

    def verify(self) -> list[str]:
        """Where the index disagrees with the layout, one line each (empty
        when it agrees or is not used)."""
        if not self.indexed:
            return []
        problems = []
        layout = scan_layout(self.driver)
        walked = list(layout)
        indexed = self._catalog.read()
        if indexed is None:
            problems.append("catalog: no readable index")
        else:
            problems += [f"catalog: {n} missing" for n in sorted(set(walked) - set(indexed))]
            problems += [f"catalog: {n} listed but gone" for n in sorted(set(indexed) - set(walked))]
        for name in walked:
            on_disk, listed = layout[name], self._tags_index(name).read()
            if listed is None:
                problems.append(f"tags of {name}: no readable index")
            elif listed != on_disk:
                missing, extra = sorted(set(on_disk) - set(listed)), sorted(set(listed) - set(on_disk))
                problems.append(f"tags of {name}: missing {missing}, listed but gone {extra}")
        return problems


def _can_create(driver: StorageDriver) -> bool:
    """Whether ``driver`` implements :meth:`StorageDriver.create` (asked of
    the class, without writing)."""
    inner = getattr(driver, "driver", driver)  # the core's CheckedDriver wraps the plugin's
    return type(inner).create is not StorageDriver.create
