"""What the pages show, read through the core's registry logic.

Listings come from the core's public listing functions
(:meth:`cargohold.registry.Registry.repositories` and
``Registry.manifests.tags``) and are cut into pages here; every row of a
page is then described from its manifest.  Manifests and configs are
content addressed, so what is derived from them (sizes, platforms, the
config summary) is kept in a per-process LRU keyed by digest and is never
stale.  Push times are the modification time of the tag's link in storage
(rewritten whenever the tag is pushed), read with one ``stat``.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import json
import logging
import threading
import time
from typing import Callable, Iterable, Iterator

from cargohold.errors import RegistryError
from cargohold.lru import LRU
from cargohold.manifests import INDEX_TYPES
from cargohold.storage import paths
from cargohold.storage.driver import StorageError

log = logging.getLogger("cargohold.ui")

#: How long a search reuses the full repository listing before reading it
#: again in the background (seconds).
SEARCH_TTL = 10.0
#: A config larger than this is not read for its summary.
MAX_CONFIG_BYTES = 1 << 20
#: An index's total size is added up over at most this many images (each
#: one manifest read); a larger index shows its size as unknown.
MAX_CHILDREN_SIZED = 64
#: Annotations buildx puts on the attestation entries of an index.
REFERENCE_TYPE = "vnd.docker.reference.type"


@dataclasses.dataclass
class Page:
    """One page of a sorted listing.  ``next_last`` is the ``last`` of the
    page after this one (``None`` on the final page); ``partial`` when the
    page stopped at its reading budget before it was full."""

    items: list
    next_last: str | None = None
    partial: bool = False


def page_of(names: Iterable[str], n: int, keep: Callable[[str], bool] = lambda _: True,
            query: str = "", budget: int | None = None) -> Page:
    """The first ``n`` of the sorted ``names`` that contain ``query``
    (case-insensitive) and pass ``keep``.  ``names`` is consumed lazily:
    ``keep`` is only asked about names that could be on the page, and the
    walk stops once the page is full and one more name is known to follow.

    With a ``budget``, at most that many names are read: a caller who may
    see few of many repositories gets a short page (``partial``) that ends
    where the reading stopped, and the next page goes on from there, so no
    page reads the whole store."""
    needle = query.lower()
    items: list[str] = []
    previous = None
    for examined, name in enumerate(names, 1):
        if budget is not None and examined > budget and previous is not None:
            return Page(items, previous, partial=True)
        previous = name
        if needle and needle not in name.lower():
            continue
        if not keep(name):
            continue
        if len(items) == n:
            return Page(items, items[-1])
        items.append(name)
    return Page(items)


def after(names: list[str], last: str | None) -> list[str]:
    """The part of the sorted ``names`` after ``last``."""
    return names[bisect.bisect_right(names, last):] if last else names


@dataclasses.dataclass
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclasses.dataclass
class Summary:
    """What is known of a manifest from its content: ``kind`` is ``index``,
    ``image`` or ``artifact``; ``size`` the compressed total (config and
    layers; for an index, its images' totals added up, ``None`` when a
    child is missing)."""

    digest: str
    media_type: str
    kind: str
    size: int | None
    platforms: list[Platform]
    artifact_type: str = ""
    raw_size: int = 0


@dataclasses.dataclass
class Child:
    digest: str
    media_type: str
    size: int
    platform: str
    role: str  # "image", or "attestation" for buildx's attestation entries
    total: int | None


@dataclasses.dataclass
class Detail:
    """A manifest page: the summary, the parsed document, the children of
    an index, the layers and config of an image."""

    summary: Summary
    document: dict
    children: list[Child]
    layers: list[dict]
    config: dict | None
    config_descriptor: dict | None
    annotations: dict


@dataclasses.dataclass
class TagRow:
    tag: str
    digest: str
    summary: Summary | None
    pushed: float | None

    @property
    def pushed_iso(self) -> str:
        return iso_time(self.pushed)


def iso_time(timestamp: float | None) -> str:
    """``2026-12-08 01:02:03 UTC``, or ``""`` when unknown."""
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _platform(obj: dict | None) -> Platform | None:
    if not isinstance(obj, dict):
        return None
    os_, arch = obj.get("os"), obj.get("architecture")
    if not isinstance(os_, str) or not isinstance(arch, str):
        return None
    variant = obj.get("variant")
    return Platform(os_, arch, variant if isinstance(variant, str) else "")


def _descriptors(value) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def _size(d: dict) -> int:
    size = d.get("size")
    return size if isinstance(size, int) and size >= 0 else 0


def _is_attestation(d: dict) -> bool:
    annotations = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
    return REFERENCE_TYPE in annotations or (d.get("platform") or {}).get("os") == "unknown"


class Catalog:
    """The pages' view of a :class:`cargohold.registry.Registry`."""

    def __init__(self, registry, cache_entries: int = 20_000):
        self.registry = registry
        self._summaries = LRU(cache_entries)
        self._configs = LRU(cache_entries)
        self._search_names: tuple[float, list[str]] | None = None
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._warming = False

    # -- listings -------------------------------------------------------------

    def repositories(self, last: str | None = None) -> Iterator[str]:
        """Repository names after ``last``, read lazily from the core's
        paginated walk."""
        return self.registry.iter_repositories(last)

    def search(self, last: str | None = None) -> list[str]:
        """Every repository name after ``last``, for a search (a substring
        can be anywhere in the catalog).  The full listing is read once and
        reused: older than :data:`SEARCH_TTL` seconds, it is still answered
        while a fresh one is read in the background (:meth:`warm`)."""
        cached = self._search_names
        if cached is None:
            cached = self._load()
        elif time.monotonic() - cached[0] > SEARCH_TTL:
            self.warm()
        return after(cached[1], last)

    def warm(self) -> None:
        """Start reading the full listing in the background, unless a fresh
        one is at hand or being read: the repository list calls this, so
        that a search typed next finds it ready."""
        cached = self._search_names
        if cached is not None and time.monotonic() - cached[0] <= SEARCH_TTL:
            return
        with self._state_lock:
            if self._warming:
                return
            self._warming = True
        threading.Thread(target=self._warm, name="cargohold-ui-listing", daemon=True).start()

    def noticed(self, repository: str) -> None:
        """A push or mount to ``repository`` in this process: a new name
        joins the listing searches use at once (other processes and
        replicas bring theirs with the next read)."""
        cached = self._search_names
        if cached is None:
            return
        names = cached[1]
        i = bisect.bisect_left(names, repository)
        if i < len(names) and names[i] == repository:
            return
        names = names[:i] + [repository] + names[i:]  # readers keep the list they hold
        self._search_names = (cached[0], names)

    def _warm(self) -> None:
        try:
            self._load()
        except Exception:  # a storage failure: the next search reads again
            log.warning("reading the repository listing for searches failed", exc_info=True)
        finally:
            self._warming = False

    def _load(self) -> tuple[float, list[str]]:
        """Read the full listing (one reader at a time; a caller arriving
        while it is read gets that result).  Yields to other work every few
        hundred names: under gevent a long walk must not hold the loop."""
        with self._load_lock:
            cached = self._search_names
            if cached is not None and time.monotonic() - cached[0] <= SEARCH_TTL:
                return cached
            names = []
            for i, name in enumerate(self.registry.iter_repositories(), 1):
                names.append(name)
                if i % 256 == 0:
                    time.sleep(0)
            self._search_names = cached = (time.monotonic(), names)
            return cached

    def tags(self, name: str) -> list[str]:
        return self.registry.manifests.tags(name)

    def pushed(self, name: str, tag: str) -> float | None:
        """When ``tag`` was last pushed: its link's modification time."""
        try:
            return self.registry.driver.stat(paths.tag_link(name, tag)).modtime or None
        except StorageError:
            return None

    def tag_rows(self, name: str, tags: Iterable[str], pushed: dict[str, float | None] | None = None) -> list[TagRow]:
        rows = []
        for tag in tags:
            try:
                digest = self.registry.manifests.resolve_tag(name, tag)
            except RegistryError:
                continue  # deleted since the listing
            when = pushed[tag] if pushed and tag in pushed else self.pushed(name, tag)
            rows.append(TagRow(tag, digest, self.summary(digest), when))
        return rows

    # -- manifests ------------------------------------------------------------

    def _document(self, digest: str) -> tuple[str, dict, int] | None:
        try:
            media_type, raw = self.registry.manifests.content(digest)
        except (RegistryError, StorageError):
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return media_type, doc if isinstance(doc, dict) else {}, len(raw)

    def config(self, descriptor: dict | None) -> dict | None:
        """The parsed image config of ``descriptor`` (JSON configs up to
        :data:`MAX_CONFIG_BYTES`), else ``None``."""
        if not descriptor or not str(descriptor.get("mediaType", "")).endswith("json"):
            return None
        digest = descriptor["digest"]
        hit = self._configs.get(digest)
        if hit is not None:
            return hit or None
        config: dict = {}
        if _size(descriptor) <= MAX_CONFIG_BYTES:
            try:
                parsed = json.loads(self.registry.blobs.get_small(digest))
                config = parsed if isinstance(parsed, dict) else {}
            except (ValueError, StorageError, RegistryError):
                config = {}
        self._configs.put(digest, config)
        return config or None

    def summary(self, digest: str, _depth: int = 0) -> Summary | None:
        hit = self._summaries.get(digest)
        if hit is not None:
            return hit
        found = self._document(digest)
        if found is None:
            return None
        media_type, doc, raw_size = found
        artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else ""
        if media_type in INDEX_TYPES:
            platforms, total = [], 0
            images = [d for d in _descriptors(doc.get("manifests")) if not _is_attestation(d)]
            if len(images) > MAX_CHILDREN_SIZED:
                total = None
            for child in images:
                p = _platform(child.get("platform"))
                if p:
                    platforms.append(p)
                if total is None:
                    continue
                sub = self.summary(child["digest"], _depth + 1) if _depth < 2 else None
                if sub is None or sub.size is None or total is None:
                    total = None
                else:
                    total += sub.size
            summary = Summary(digest, media_type, "index", total, platforms, artifact_type, raw_size)
        else:
            config_d = doc.get("config") if isinstance(doc.get("config"), dict) else None
            layers = _descriptors(doc.get("layers"))
            size = sum(_size(d) for d in layers) + (_size(config_d) if config_d else 0)
            config_type = str((config_d or {}).get("mediaType", ""))
            image = config_type.endswith(("image.config.v1+json", "container.image.v1+json"))
            platforms = []
            if image:
                p = _platform(self.config(config_d))
                platforms = [p] if p else []
            kind = "image" if image and not artifact_type else "artifact"
            if kind == "artifact" and not artifact_type:
                artifact_type = config_type
            summary = Summary(digest, media_type, kind, size, platforms, artifact_type, raw_size)
        self._summaries.put(digest, summary)
        return summary

    def detail(self, digest: str) -> Detail | None:
        found = self._document(digest)
        summary = self.summary(digest)
        if found is None or summary is None:
            return None
        _, doc, _ = found
        children = []
        descriptors = _descriptors(doc.get("manifests"))
        for d in descriptors:
            sub = self.summary(d["digest"]) if len(descriptors) <= MAX_CHILDREN_SIZED else None
            children.append(Child(
                d["digest"], str(d.get("mediaType", "")), _size(d),
                str(_platform(d.get("platform")) or ""),
                "attestation" if _is_attestation(d) else "image",
                sub.size if sub else None))
        config_d = doc.get("config") if isinstance(doc.get("config"), dict) else None
        config = self.config(config_d) if summary.kind == "image" else None
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else {}
        return Detail(summary, doc, children, _descriptors(doc.get("layers")), config, config_d, annotations)

    def referrers(self, name: str, digest: str) -> dict[str, list[dict]]:
        """The manifests whose subject is ``digest``, grouped by
        ``artifactType`` (sorted)."""
        groups: dict[str, list[dict]] = {}
        for d in self.registry.manifests.referrers(name, digest):
            if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
                continue
            groups.setdefault(str(d.get("artifactType") or "(no artifact type)"), []).append(d)
        return dict(sorted(groups.items()))


def image_config_summary(config: dict | None) -> dict:
    """OS, architecture, created, entrypoint, command, working directory,
    user, exposed ports and labels of an image config, as strings/lists."""
    if not config:
        return {}
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    labels = inner.get("Labels") if isinstance(inner.get("Labels"), dict) else {}
    ports = inner.get("ExposedPorts")

    def words(value) -> str:
        if isinstance(value, list):
            return " ".join(json.dumps(v) if " " in str(v) else str(v) for v in value)
        return str(value) if value else ""

    return {
        "platform": str(_platform(config) or ""),
        "created": str(config.get("created") or ""),
        "entrypoint": words(inner.get("Entrypoint")),
        "cmd": words(inner.get("Cmd")),
        "workdir": str(inner.get("WorkingDir") or ""),
        "user": str(inner.get("User") or ""),
        "ports": sorted(str(p) for p in ports) if isinstance(ports, dict) else [],
        "labels": {str(k): str(v) for k, v in sorted(labels.items())},
    }


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
