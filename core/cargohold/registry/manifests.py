"""Manifests, tags and referrers of a repository, on top of the blob store."""

from __future__ import annotations

import dataclasses
import functools
import json

from cargohold.blocking import concurrently
from cargohold.errors import ManifestBlobUnknown, ManifestUnknown, NameUnknown
from cargohold.lru import SizedLRU
from cargohold.manifests import Manifest, manifest_closure, media_type_of, parse
from cargohold.registry.blobs import BlobStore
from cargohold.registry.catalog import Listings
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver


#: Default bound of the manifest cache, per process (``storage.cache.manifestsize``).
DEFAULT_CACHE_BYTES = 64 << 20
#: What a cache entry costs besides the manifest's bytes (key, tuple, media
#: type, dict slot), counted against the bound so that small manifests
#: cannot make it hold much more than it says.
ENTRY_OVERHEAD = 512


@dataclasses.dataclass(frozen=True)
class TagRecord:
    """A tag of a repository: the manifest it names, and when it was last
    pushed, as the store's modtime of the tag's link (every push of the tag
    rewrites it; the reference registry writes the same file, so a store it
    served keeps its tags' times)."""

    tag: str
    digest: str
    pushed: float


class Manifests:
    """Manifest bytes are stored as blobs (content addressed, immutable), so
    a per-process cache of ``digest -> (media type, bytes)`` is always
    correct; whether a repository *has* a manifest, and where a tag points,
    is read from storage on every request.  The cache holds at most
    ``cache_bytes`` of manifests (each counted with :data:`ENTRY_OVERHEAD`);
    0 turns it off."""

    def __init__(self, driver: StorageDriver, blobs: BlobStore, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 listings: Listings | None = None):
        self.driver = driver
        self.blobs = blobs
        self._content = SizedLRU(cache_bytes)
        #: Tags lists, and the listing index kept up to date on writes.
        self.listings = listings or blobs.listings

    # -- reads --------------------------------------------------------------

    def resolve_tag(self, name: str, tag: str) -> str:
        try:
            return self.driver.get_content(paths.tag_link(name, tag)).decode()
        except PathNotFound:
            raise ManifestUnknown(detail={"tag": tag})

    def has_revision(self, name: str, digest: str) -> bool:
        try:
            self.driver.stat(paths.manifest_revision_link(name, digest))
            return True
        except PathNotFound:
            return False

    def rely_on_revision(self, name: str, digest: str) -> bool:
        """:meth:`has_revision` for a request that acts on the answer (an
        index naming a child), recorded for the garbage collector first; see
        :meth:`BlobStore.rely_on_link`."""
        return self.blobs.usage.check(digest, lambda: self.has_revision(name, digest))

    def content(self, digest: str) -> tuple[str, bytes]:
        """``(media type, bytes)`` of a stored manifest."""
        hit = self._content.get(digest)
        if hit is None:
            try:
                raw = self.blobs.get_small(digest)
            except PathNotFound:
                raise ManifestUnknown(detail={"digest": digest})
            hit = (media_type_of(json.loads(raw)), raw)
            self._content.put(digest, hit, len(raw) + ENTRY_OVERHEAD)
        return hit

    def get(self, name: str, reference: str, by_digest: bool) -> tuple[str, str, bytes]:
        """``(digest, media type, bytes)`` for a tag or digest in ``name``."""
        if by_digest:
            digest = reference
            if not self.has_revision(name, digest):
                raise ManifestUnknown(detail={"digest": digest})
        else:
            digest = self.resolve_tag(name, reference)
        media_type, raw = self.content(digest)
        return digest, media_type, raw

    # -- writes -------------------------------------------------------------

    def check_references(self, name: str, manifest: Manifest) -> None:
        """Every blob an image manifest names, and every child of an index,
        must already be in the repository (MANIFEST_BLOB_UNKNOWN)."""
        for desc in manifest.blob_references():
            if desc.urls:
                continue  # non-distributable layer, fetched from its URLs
            if not self.blobs.rely_on_link(name, desc.digest):
                raise ManifestBlobUnknown(detail={"digest": desc.digest})
        for desc in manifest.manifest_references():
            if not self.rely_on_revision(name, desc.digest):
                raise ManifestBlobUnknown(detail={"digest": desc.digest})

    def put(self, name: str, manifest: Manifest, tags: list[str]) -> None:
        """Store the manifest, link it into ``name``, index it as a referrer
        of its subject, then point ``tags`` at it: the content is complete
        before any name refers to it."""
        self.blobs.put_small(manifest.digest, manifest.raw)
        self._content.put(manifest.digest, (manifest.media_type, manifest.raw), len(manifest.raw) + ENTRY_OVERHEAD)
        subject = manifest.subject
        if subject is not None:
            descriptor = {
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": len(manifest.raw),
            }
            if manifest.artifact_type:
                descriptor["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                descriptor["annotations"] = manifest.annotations
            self.driver.put_content(
                paths.referrer_link(name, subject.digest, manifest.digest), json.dumps(descriptor).encode()
            )
        # The revision link and the tags only need the content first: they
        # are written together, their fsyncs overlapping (and committed in
        # one journal transaction where the file system has one).
        link = manifest.digest.encode()
        concurrently(lambda: self.driver.put_content(paths.manifest_revision_link(name, manifest.digest), link),
                     *(functools.partial(self.driver.put_content, paths.tag_link(name, tag), link) for tag in tags))
        self.listings.repository_used(name)
        if tags:
            self.listings.tags_changed(name, added=tags)

    def delete(self, name: str, digest: str) -> None:
        """Delete a manifest from ``name``: its revision, every tag pointing at
        it, and its referrer entry."""
        if not self.has_revision(name, digest):
            raise ManifestUnknown(detail={"digest": digest})
        for tag in self.tags_of(name, digest):
            try:
                self.delete_tag(name, tag)
            except ManifestUnknown:
                pass
        try:
            _, raw = self.content(digest)
            subject = parse(raw, None, digest.partition(":")[0]).subject
        except Exception:  # unreadable manifest: nothing to unindex
            subject = None
        if subject is not None:
            try:
                self.driver.delete(paths.referrer_link(name, subject.digest, digest))
            except PathNotFound:
                pass
        try:
            self.driver.delete(paths.manifest_revision_dir(name, digest))
        except PathNotFound:
            raise ManifestUnknown(detail={"digest": digest})

    # -- tags ---------------------------------------------------------------

    def tags(self, name: str) -> list[str]:
        """All tags of ``name`` in lexical order; NAME_UNKNOWN if the
        repository does not exist."""
        found = self.listings.tags(name)
        if found is None:
            raise NameUnknown(detail={"name": name})
        return found

    def tag_records(self, name: str) -> list[TagRecord]:
        """Every tag of ``name`` with its manifest and push time, in lexical
        order of the tags (a tag deleted while listing is left out);
        NAME_UNKNOWN if the repository does not exist."""
        records = []
        for tag in self.tags(name):
            link = paths.tag_link(name, tag)
            try:
                records.append(TagRecord(tag, self.driver.get_content(link).decode(), self.driver.stat(link).modtime))
            except PathNotFound:
                continue
        return records

    def revisions(self, name: str) -> dict[str, float]:
        """Every manifest of ``name``: digest -> when it was pushed into the
        repository (the store's modtime of its revision link)."""
        out = {}
        try:
            for info in self.driver.walk(paths.manifest_revisions(name)):
                digest = None if info.is_dir else paths.digest_from_link(info.path)
                if digest is not None:
                    out[digest] = info.modtime
        except PathNotFound:
            pass
        return out

    def reachable(self, name: str, roots: list[str]) -> set[str]:
        """The manifests ``roots`` (digests) reach in ``name``: themselves,
        the children of an index (recursively) and the referrers of each, as
        the garbage collector keeps them (:func:`manifest_closure`)."""
        by_subject: dict[str, list[str]] = {}
        try:
            for info in self.driver.walk(paths.referrers(name)):
                if not info.is_dir:
                    subject, referrer = paths.referrer_entry_digests(info.path)
                    by_subject.setdefault(subject, []).append(referrer)
        except PathNotFound:
            pass
        return {digest for digest, _ in manifest_closure(roots, self._stored, by_subject)}

    def _stored(self, digest: str) -> bytes | None:
        try:
            return self.content(digest)[1]
        except (ManifestUnknown, ValueError):  # not stored, or not a manifest
            return None

    def tags_of(self, name: str, digest: str) -> list[str]:
        """The tags of ``name`` pointing at the manifest ``digest``."""
        found = []
        for tag in self.tags(name):
            try:
                if self.resolve_tag(name, tag) == digest:
                    found.append(tag)
            except ManifestUnknown:
                pass  # deleted meanwhile
        return found

    def tag_target(self, name: str, tag: str) -> str | None:
        """The digest ``tag`` points at, or ``None`` when there is no such tag."""
        try:
            return self.resolve_tag(name, tag)
        except ManifestUnknown:
            return None

    def delete_tag(self, name: str, tag: str) -> None:
        try:
            self.driver.delete(paths.tag_dir(name, tag))
        except PathNotFound:
            self.listings.tags_changed(name, removed=[tag])  # an index that still lists it heals
            raise ManifestUnknown(detail={"tag": tag})
        self.listings.tags_changed(name, removed=[tag])

    def repository_exists(self, name: str) -> bool:
        try:
            self.driver.stat(paths.repository(name))
            return True
        except PathNotFound:
            return False

    # -- referrers ----------------------------------------------------------

    def referrers(self, name: str, subject: str) -> list[dict]:
        """Descriptors of the manifests in ``name`` whose subject is
        ``subject``, ordered by digest."""
        try:
            keys = self.driver.list(paths.referrers_dir(name, subject))
        except PathNotFound:
            return []
        out = []
        for key in keys:
            try:
                out.append(json.loads(self.driver.get_content(key)))
            except (PathNotFound, ValueError):
                continue  # deleted meanwhile, or unreadable: not a referrer
        return out
