"""The pull-through cache's logic over the registry: what to serve from
storage, when to ask the upstream, and how fetched content is stored.

* Manifests by digest are content-addressed: once cached they are served
  from storage for ever.  By tag, a cached tag is served while it is fresher
  than the upstream's ``tagttl``; after that the upstream is asked with a
  ``HEAD`` and the manifest fetched again only when the tag moved.
* Blobs not yet cached are fetched once per process however many clients
  ask at the same time (:class:`BlobFetch`): the bytes go to storage through
  a writer that stays invisible until the digest is verified, and every
  waiting client streams them as they arrive.  A short or corrupt transfer
  is cancelled and never becomes a blob.
* While the upstream cannot be reached, whatever is cached is served
  (stale-if-error, with a warning); only content never cached fails, with
  ``UNAVAILABLE``.
* Every pull records when it happened (at most once per ``ttl / 10``), so
  :meth:`PullThroughCache.purge` can unlink what was not pulled within the
  upstream's ``ttl``; blobs still used by a kept manifest stay.  The bytes
  of unlinked blobs are left to garbage collection.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import parse_qs

from cargohold.errors import BlobUnknown, ManifestUnknown, NameUnknown, RegistryError, Unavailable
from cargohold.lru import LRU
from cargohold.manifests import parse
from cargohold.proxy.upstream import MANIFEST_ACCEPT, Upstream, UpstreamClient
from cargohold.reference import algorithm_of, digest_bytes, new_hasher
from cargohold.registry import Registry
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound

log = logging.getLogger("cargohold.proxy")

CHUNK = 1 << 20
#: How long a client waits for the next bytes of a shared fetch before the
#: wait is re-checked (the fetch itself is bounded by the upstream timeout).
WAIT_SLICE = 1.0


@dataclass(frozen=True)
class Route:
    """A local repository served by an upstream: ``local`` here, ``remote``
    there."""

    upstream: Upstream
    client: UpstreamClient
    local: str
    remote: str


class PullThroughCache:
    """The cache over one :class:`~cargohold.registry.Registry`.  ``metrics``
    is the app's :class:`~cargohold.metrics.RegistryMetrics` (or ``None``);
    ``spool_dir`` is where fetches keep the bytes that waiting clients read
    (the system's temporary directory by default); ``shared_spool``, a
    directory the server's worker processes share, lets them share fetches
    too."""

    def __init__(self, registry: Registry, metrics=None, spool_dir: str | None = None,
                 manifest_limit: int = 4 << 20, shared_spool: str | None = None):
        self.registry = registry
        self.driver = registry.driver
        self.metrics = metrics
        self.spool_dir = spool_dir
        #: The directory the server's workers share (http.workers > 1): a
        #: blob is then fetched once for all of them (see BlobFetch).
        self.shared_spool = shared_spool
        if shared_spool is not None:
            os.makedirs(shared_spool, exist_ok=True)
        self.manifest_limit = manifest_limit
        self._fetches: dict[tuple, BlobFetch] = {}
        self._lock = threading.Lock()
        self._recorded = LRU(65536)  # (name, digest) -> when this process last wrote the record

    # -- bookkeeping ---------------------------------------------------------

    def count(self, route: Route, kind: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.proxy_lookup(route.upstream.url, kind, result)

    def upstream_error(self, route: Route, error: RegistryError) -> None:
        if self.metrics is not None:
            self.metrics.proxy_upstream_error(route.upstream.url)

    def fetched(self, route: Route, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.proxy_fetched(route.upstream.url, n)

    def record_pull(self, route: Route, digest: str, force: bool = False) -> None:
        """Remember that ``digest`` was pulled from ``route.local`` now; the
        write happens at most once per ``ttl / 10`` per process."""
        ttl = route.upstream.ttl
        if ttl <= 0:
            return
        now = time.time()
        key = (route.local, digest)
        last = self._recorded.get(key)
        if not force and last is not None and now - last < ttl / 10:
            return
        try:
            self.driver.put_content(paths.proxy_pulled(route.local, digest), str(now).encode())
        except Exception as e:  # bookkeeping must not fail a pull
            log.warning("cannot record the pull of %s@%s: %s", route.local, digest, e)
            return
        self._recorded.put(key, now)

    def _stale(self, route: Route, kind: str, what: str, error: RegistryError) -> None:
        self.upstream_error(route, error)
        self.count(route, kind, "stale")
        log.warning("serving cached %s of %s: %s", what, route.local, error.message)

    # -- manifests -----------------------------------------------------------

    def manifest(self, route: Route, reference: str, by_digest: bool) -> str | None:
        """Make sure the manifest is in storage (and the tag fresh enough),
        so the registry serves it as any other; raises the spec error when
        it cannot be.  Returns the upstream URL it was fetched from now, if
        it was."""
        manifests = self.registry.manifests
        if by_digest:
            fetched = None
            if manifests.has_revision(route.local, reference):
                self.count(route, "manifest", "hit")
            else:
                try:
                    fetched = self._fetch_manifest(route, reference, reference, tags=[])
                except RegistryError as e:
                    self._failed(route, "manifest", e)
                    raise
                self.count(route, "manifest", "miss")
            self.record_pull(route, reference)
            return route.client.url(route.remote, f"manifests/{fetched}") if fetched else None
        tag = reference
        try:
            cached = manifests.resolve_tag(route.local, tag)
        except ManifestUnknown:
            cached = None
        if cached is not None and self._fresh(route, tag):
            self.count(route, "manifest", "hit")
            self.record_pull(route, cached)
            return None
        fetched = None
        try:
            current = self._head_manifest(route, tag)
            if cached is not None and current == cached:
                self.count(route, "manifest", "revalidated")
            else:
                current = fetched = self._fetch_manifest(route, current or tag, current, tags=[tag])
                self.count(route, "manifest", "miss")
            self._mark_checked(route, tag, current)
        except Unavailable as e:
            if cached is None:
                self._failed(route, "manifest", e)
                raise
            self._stale(route, "manifest", f"tag {tag}", e)
            current = cached
        except ManifestUnknown:
            if cached is not None:  # gone upstream: gone here too
                try:
                    manifests.delete_tag(route.local, tag)
                except ManifestUnknown:
                    pass
            self.count(route, "manifest", "unknown")
            raise
        self.record_pull(route, current)
        return route.client.url(route.remote, f"manifests/{fetched}") if fetched else None

    def _failed(self, route: Route, kind: str, error: RegistryError) -> None:
        if isinstance(error, Unavailable):
            self.upstream_error(route, error)
            self.count(route, kind, "error")
        else:
            self.count(route, kind, "unknown")

    def _fresh(self, route: Route, tag: str) -> bool:
        try:
            checked = json.loads(self.driver.get_content(paths.proxy_tag_checked(route.local, tag)))["checked"]
        except (PathNotFound, ValueError, KeyError, TypeError):
            return False
        return time.time() - float(checked) < route.upstream.tagttl

    def _mark_checked(self, route: Route, tag: str, digest: str) -> None:
        record = {"checked": time.time(), "digest": digest}
        self.driver.put_content(paths.proxy_tag_checked(route.local, tag), json.dumps(record).encode())

    def _head_manifest(self, route: Route, tag: str) -> str | None:
        """The digest the tag names upstream (``None`` when the upstream
        does not say); MANIFEST_UNKNOWN when it has no such tag."""
        resp = route.client.request("HEAD", route.remote, f"manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        resp.close()
        if resp.status_code == 404:
            raise ManifestUnknown(detail={"tag": tag, "upstream": route.upstream.url})
        if resp.status_code != 200:
            raise route.client.unavailable(f"HEAD manifests/{tag} answered {resp.status_code}")
        return resp.headers.get("Docker-Content-Digest")

    def _fetch_manifest(self, route: Route, reference: str, expected: str | None, tags: list[str]) -> str:
        """GET the manifest upstream, check its digest, store it (with
        ``tags``); returns its digest."""
        resp = route.client.request("GET", route.remote, f"manifests/{reference}",
                                    headers={"Accept": MANIFEST_ACCEPT}, stream=True)
        try:
            if resp.status_code == 404:
                raise ManifestUnknown(detail={"reference": reference, "upstream": route.upstream.url})
            if resp.status_code != 200:
                raise route.client.unavailable(f"GET manifests/{reference} answered {resp.status_code}")
            try:
                raw = resp.raw.read(self.manifest_limit + 1, decode_content=True)
            except Exception as e:
                raise route.client.unavailable(f"the manifest transfer failed ({type(e).__name__})") from None
        finally:
            resp.close()
        if len(raw) > self.manifest_limit:
            raise route.client.unavailable("it sent a manifest larger than validation.manifests.maxsize")
        self.fetched(route, len(raw))
        algorithm = algorithm_of(expected) if expected else "sha256"
        digest = digest_bytes(raw, algorithm)
        if expected and digest != expected:
            raise route.client.unavailable(f"it sent a manifest whose digest is {digest}, not {expected}")
        try:
            manifest = parse(raw, resp.headers.get("Content-Type"), algorithm)
        except RegistryError as e:
            raise route.client.unavailable(f"it sent a manifest cargohold cannot store: {e.message}") from None
        self.registry.manifests.put(route.local, manifest, tags)
        return manifest.digest

    # -- blobs ---------------------------------------------------------------

    def blob_cached(self, route: Route, digest: str) -> bool:
        """Whether ``route.local`` can serve the blob from storage; links a
        blob stored for another repository once the upstream confirms this
        repository has it."""
        blobs = self.registry.blobs
        if blobs.size(digest) is None:
            return False
        if not blobs.is_linked(route.local, digest):
            self.blob_head(route, digest)  # the upstream has it in this repository
            blobs.link(route.local, digest)
        self.count(route, "blob", "hit")
        self.record_pull(route, digest)
        return True

    def blob_head(self, route: Route, digest: str) -> int | None:
        """The size the upstream gives for an uncached blob (``None`` when
        it does not say); BLOB_UNKNOWN when it has none."""
        resp = route.client.request("HEAD", route.remote, f"blobs/{digest}")
        resp.close()
        if resp.status_code == 404:
            raise BlobUnknown(detail={"digest": digest, "upstream": route.upstream.url})
        if resp.status_code != 200:
            raise route.client.unavailable(f"HEAD blobs/{digest} answered {resp.status_code}")
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    def blob_fetch(self, route: Route, digest: str) -> "BlobFetch":
        """The fetch of an uncached blob, started now or joined if one for
        the same upstream repository is under way in this process."""
        key = (route.upstream.url, route.remote, digest)
        with self._lock:
            fetch = self._fetches.get(key)
            joining = fetch is not None and fetch.joinable()
            if not joining:
                fetch = BlobFetch(self, route, digest)
                self._fetches[key] = fetch
        if joining:
            fetch.wait_started()  # the first client's error, if the upstream refused
            self.count(route, "blob", "joined")
            return fetch
        try:
            fetch.start()
        except RegistryError as e:
            with self._lock:
                if self._fetches.get(key) is fetch:
                    del self._fetches[key]
            self._failed(route, "blob", e)
            raise
        self.count(route, "blob", "joined" if fetch.following else "miss")
        return fetch

    def _fetch_ended(self, fetch: "BlobFetch") -> None:
        key = (fetch.route.upstream.url, fetch.route.remote, fetch.digest)
        with self._lock:
            if self._fetches.get(key) is fetch:
                del self._fetches[key]

    # -- expiry --------------------------------------------------------------

    def purge(self, routes: list[Route], now: float | None = None, dry_run: bool = False) -> list[str]:
        """Unlink what ``routes``' repositories have not pulled within their
        upstream's ``ttl``: manifests (and the tags naming them), then the
        blob links no kept manifest uses.  Returns ``repository@digest`` of
        each manifest or blob unlinked.  Blob bytes stay in the global store
        until garbage collection finds them unreferenced, so expiring one
        image never removes a blob another repository or a kept image
        links."""
        now = time.time() if now is None else now
        removed: list[str] = []
        for route in routes:
            ttl = route.upstream.ttl
            if ttl <= 0:
                continue
            removed += self._purge_repository(route, now - ttl, dry_run)
        return removed

    def _pulled_at(self, name: str, digest: str) -> float:
        try:
            return float(self.driver.get_content(paths.proxy_pulled(name, digest)))
        except (PathNotFound, ValueError):
            return 0.0  # cached before records existed, or never pulled: expired

    def _digests_below(self, directory: str) -> list[str]:
        found = []
        try:
            algorithms = self.driver.list(directory)
        except PathNotFound:
            return found
        for alg_dir in algorithms:
            try:
                found += [paths.digest_from_dir_key(k) for k in self.driver.list(alg_dir)]
            except PathNotFound:
                continue
        return found

    def _purge_repository(self, route: Route, cutoff: float, dry_run: bool) -> list[str]:
        name, manifests = route.local, self.registry.manifests
        revisions = self._digests_below(paths.manifest_revisions(name))
        expired = {d for d in revisions if self._pulled_at(name, d) < cutoff}
        kept = [d for d in revisions if d not in expired]
        used: set[str] = set()
        pending = list(kept)
        while pending:  # kept indexes keep their children
            digest = pending.pop()
            try:
                _, raw = manifests.content(digest)
                manifest = parse(raw, None, algorithm_of(digest))
            except (RegistryError, PathNotFound):
                continue
            used.update(d.digest for d in manifest.blob_references())
            for child in manifest.manifest_references():
                if child.digest in expired:
                    expired.discard(child.digest)
                    pending.append(child.digest)
        removed = []
        for digest in sorted(expired):
            removed.append(f"{name}@{digest}")
            if not dry_run:
                try:
                    manifests.delete(name, digest)
                except ManifestUnknown:
                    pass
                self._forget(name, digest)
        for digest in self._digests_below(paths.layers(name)):
            if digest in used or self._pulled_at(name, digest) >= cutoff:
                continue
            removed.append(f"{name}@{digest}")
            if not dry_run:
                try:
                    self.registry.blobs.unlink(name, digest)
                except BlobUnknown:
                    pass
                self._forget(name, digest)
        if removed:
            log.info("proxy purge: %s %d expired item(s) of %s", "would unlink" if dry_run else "unlinked",
                     len(removed), name)
        return removed

    def _forget(self, name: str, digest: str) -> None:
        self._recorded.pop((name, digest))
        try:
            self.driver.delete(paths.proxy_pulled(name, digest))
        except PathNotFound:
            pass

    # -- listings ------------------------------------------------------------

    #: Upper bound on the upstream's tag list pages followed.
    MAX_TAG_PAGES = 100

    def tags(self, route: Route) -> list[str] | None:
        """Every tag the upstream lists for ``route`` (its pages followed),
        sorted, or ``None`` when the upstream cannot be reached (the cached
        tags are served then)."""
        tags: set[str] = set()
        params: dict | None = None
        for _ in range(self.MAX_TAG_PAGES):
            try:
                resp = route.client.request("GET", route.remote, "tags/list", params=params)
                with resp:
                    if resp.status_code == 404:
                        self.count(route, "tags", "unknown")
                        raise NameUnknown(detail={"name": route.local, "upstream": route.upstream.url})
                    try:
                        tags.update(t for t in resp.json().get("tags") or [] if isinstance(t, str))
                    except (ValueError, AttributeError):
                        raise route.client.unavailable("it sent an unreadable tag list") from None
            except Unavailable as e:
                self._stale(route, "tags", "tags", e)
                return None
            next_page = resp.links.get("next", {}).get("url")
            if not next_page or "?" not in next_page:
                break
            params = {k: v[-1] for k, v in parse_qs(next_page.split("?", 1)[1]).items()}
        self.count(route, "tags", "upstream")
        return sorted(tags)

    def referrers(self, route: Route, digest: str, params: dict) -> tuple[bytes, dict] | None:
        """The upstream's referrers response (body and headers to keep), or
        ``None`` to serve the cached ones (upstream unreachable, or without
        the referrers API)."""
        try:
            resp = route.client.request("GET", route.remote, f"referrers/{digest}", params=params)
        except Unavailable as e:
            self._stale(route, "referrers", "referrers", e)
            return None
        with resp:
            if resp.status_code != 200:
                return None
            body = resp.content
        headers = {"Content-Type": resp.headers.get("Content-Type", "application/vnd.oci.image.index.v1+json")}
        if resp.headers.get("OCI-Filters-Applied"):
            headers["OCI-Filters-Applied"] = resp.headers["OCI-Filters-Applied"]
        self.count(route, "referrers", "upstream")
        return body, headers


class BlobFetch:
    """One transfer of a blob from the upstream into storage, shared by every
    client that asks for it meanwhile: in this process, and in the other
    workers of the same server when they share a spool directory.

    :meth:`start` decides who fetches.  Without a shared spool directory,
    or when this process wins the directory's lock for the blob, it is the
    *fetcher*: it sends the request (so a 404 or an unreachable upstream fails
    the first client with the spec error) and hands the body to a thread of
    its own, which writes each chunk to the storage writer and to a spool
    file, hashing as it goes, and commits only when size and digest match.
    Otherwise another worker is fetching, and this process *follows* its
    spool file, polling its growth, until that worker releases the lock;
    the blob is then in storage, or the transfer failed.

    :meth:`stream` yields the bytes to one client as they arrive, from the
    spool file (memory stays flat however many wait), or from storage once
    the fetch is over.  Clients get the last chunk only after the commit:
    no client receives a whole body that does not match its digest, and
    once a client has the whole blob, it is cached.  A failed transfer ends
    every stream with an error (a short body)."""

    #: How often a follower looks at the fetching worker's spool file.
    POLL = 0.05

    def __init__(self, cache: PullThroughCache, route: Route, digest: str):
        self.cache, self.route, self.digest = cache, route, digest
        self.size: int | None = None
        self.written = 0
        self.done = False
        self.error: str | None = None
        self._cond = threading.Condition()
        self._fd: int | None = None  # the spool file, readable at any offset
        self._started = threading.Event()
        self._start_error: RegistryError | None = None
        self._lock_fd: int | None = None
        self._base: str | None = None
        #: Whether another worker fetches, and this process follows.
        self.following = False

    def joinable(self) -> bool:
        with self._cond:
            return not self.done and self._start_error is None

    def wait_started(self) -> None:
        """Wait until the first client's :meth:`start` is over; raises the
        error it got."""
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    # -- starting ------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except RegistryError as e:
            self._start_error = e
            self._unlock()
            raise
        except Exception as e:  # no spool file: nothing can be served
            self._start_error = self.route.client.unavailable(f"the transfer could not start ({type(e).__name__})")
            self._unlock()
            raise self._start_error from e
        finally:
            self._started.set()

    def _start(self) -> None:
        shared = self.cache.shared_spool
        if shared is None:
            fd, path = tempfile.mkstemp(prefix="cargohold-proxy-", dir=self.cache.spool_dir)
            os.unlink(path)  # the descriptor is all anyone needs
            self._fetch(fd)
            return
        key = "\0".join((self.route.upstream.url, self.route.remote, self.digest)).encode()
        self._base = os.path.join(shared, hashlib.sha256(key).hexdigest()[:40])
        deadline = time.monotonic() + 2 * self.route.upstream.timeout + 1  # its connect and first read
        while True:
            if self._lock(blocking=False):
                if self.cache.registry.blobs.size(self.digest) is not None:  # another worker just finished
                    self._unlock()
                    self._adopt()
                    return
                for suffix in (".meta", ".result"):
                    _remove(self._base + suffix)
                fd = os.open(self._base + ".data", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                self._fetch(fd)
                return
            meta = self._read(".meta")
            if meta is not None:
                self._follow(meta)
                return
            if time.monotonic() > deadline:
                raise self.route.client.unavailable("another worker's transfer of the blob did not start in time")
            time.sleep(self.POLL)

    def _fetch(self, fd: int) -> None:
        try:
            resp = self.route.client.request("GET", self.route.remote, f"blobs/{self.digest}", stream=True)
        except BaseException:
            os.close(fd)
            raise
        if resp.status_code != 200:
            resp.close()
            os.close(fd)
            if resp.status_code == 404:
                raise BlobUnknown(detail={"digest": self.digest, "upstream": self.route.upstream.url})
            raise self.route.client.unavailable(f"GET blobs/{self.digest} answered {resp.status_code}")
        length = resp.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None
        self._fd = fd
        if self._base is not None:  # followers in other workers may start now
            _write_atomically(self._base + ".meta", json.dumps({"size": self.size}))
        threading.Thread(target=self._run, args=(resp,), name=f"proxy-fetch-{self.digest[:19]}",
                         daemon=True).start()

    def _follow(self, meta: str) -> None:
        try:
            fd = os.open(self._base + ".data", os.O_RDONLY)
        except FileNotFoundError:  # the fetching worker just finished: storage has it, or not
            self._adopt()
            return
        try:
            self.size = json.loads(meta)["size"]
        except (ValueError, KeyError, TypeError):
            self.size = None
        self._fd = fd
        self.following = True
        threading.Thread(target=self._run_following, name=f"proxy-follow-{self.digest[:19]}", daemon=True).start()

    def _adopt(self) -> None:
        """Another worker's fetch ended before this one could follow it."""
        size = self.cache.registry.blobs.size(self.digest)
        if size is None:
            raise self.route.client.unavailable("the transfer in another worker failed")
        self.cache.registry.blobs.link(self.route.local, self.digest)
        self.cache.record_pull(self.route, self.digest, force=True)
        self.size = size
        self._finish(None, size)

    # -- transferring --------------------------------------------------------

    def _run(self, resp) -> None:
        cache, route, digest = self.cache, self.route, self.digest
        blobs = cache.registry.blobs
        hasher = new_hasher(algorithm_of(digest))
        writer = None if blobs.size(digest) is not None else cache.driver.writer(paths.blob_data(digest))
        received, error = 0, None
        try:
            for chunk in resp.iter_content(CHUNK):
                if not chunk:
                    continue
                os.write(self._fd, chunk)
                if writer is not None:
                    writer.write(chunk)
                hasher.update(chunk)
                self._publish(received)  # all but the newest chunk: see the class docstring
                received += len(chunk)
            actual = f"{hasher.name}:{hasher.hexdigest()}"
            if self.size is not None and received != self.size:
                raise ValueError(f"received {received} of {self.size} bytes")
            if actual != digest:
                raise ValueError(f"the bytes received have the digest {actual}")
            if writer is not None:
                writer.commit()
            blobs.remember_size(digest, received)
            blobs.link(route.local, digest)
            cache.record_pull(route, digest, force=True)
        except Exception as e:
            error = str(e) if isinstance(e, ValueError) else f"the transfer failed ({type(e).__name__})"
            if writer is not None:
                writer.cancel()
            cache.upstream_error(route, route.client.unavailable(error))
            log.warning("not caching %s from %s/%s: %s", digest, route.upstream.url, route.remote, error)
        finally:
            if writer is not None:
                writer.close()
            resp.close()
            cache.fetched(route, received)
            if self._base is not None:
                _write_atomically(self._base + ".result", error or "ok")
                _remove(self._base + ".meta")
                _remove(self._base + ".data")  # open readers keep their descriptor
                self._unlock()
            self._finish(error, received)

    def _run_following(self) -> None:
        """Publish what the fetching worker has written, until it lets go
        of the lock; its ``.result`` then says whether the blob is stored."""
        error = None
        try:
            while not self._lock(blocking=False):
                size = os.fstat(self._fd).st_size
                if size > self.written + 1:
                    self._publish(size - 1)  # the last byte waits for the commit
                time.sleep(self.POLL)
            result = self._read(".result")
            self._unlock()
            if result != "ok" or self.cache.registry.blobs.size(self.digest) is None:
                error = f"the transfer in another worker failed: {result or 'it ended without a result'}"
        except Exception as e:
            error = f"following another worker's transfer failed ({type(e).__name__})"
            self._unlock()
        if error is None:
            self.cache.registry.blobs.link(self.route.local, self.digest)
            self.cache.record_pull(self.route, self.digest, force=True)
        self._finish(error, os.fstat(self._fd).st_size)

    def _publish(self, written: int) -> None:
        with self._cond:
            self.written = written
            self._cond.notify_all()

    def _finish(self, error: str | None, size: int | None = None) -> None:
        with self._cond:
            if error is None and size is not None:
                self.written = size  # the last chunk, once verified and committed
            self.error = error
            self.done = True
            fd, self._fd = self._fd, None
            self._cond.notify_all()
        if fd is not None:
            os.close(fd)  # readers hold duplicates
        self.cache._fetch_ended(self)

    # -- the shared spool directory -------------------------------------------

    def _lock(self, blocking: bool) -> bool:
        if self._lock_fd is None:
            self._lock_fd = os.open(self._base + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the lock

    def _read(self, suffix: str) -> str | None:
        try:
            with open(self._base + suffix) as f:
                return f.read()
        except FileNotFoundError:
            return None

    # -- serving -------------------------------------------------------------

    def stream(self) -> Iterator[bytes]:
        """The blob's bytes for one client (see the class docstring)."""
        with self._cond:
            fd = None if self.done else os.dup(self._fd)
            failed = self.done and self.error
        if fd is None:
            if failed:
                raise BlobTransferFailed(self.digest, self.error)
            yield from self.cache.registry.blobs.open(self.digest)
            return
        try:
            sent = 0
            while True:
                with self._cond:
                    while self.written <= sent and not self.done:
                        self._cond.wait(WAIT_SLICE)
                    available, done, error = self.written, self.done, self.error
                if error:
                    raise BlobTransferFailed(self.digest, error)
                if sent < available:
                    chunk = os.pread(fd, min(CHUNK, available - sent), sent)
                    if not chunk:
                        raise BlobTransferFailed(self.digest, "the spool file is shorter than announced")
                    sent += len(chunk)
                    yield chunk
                elif done:
                    return
        finally:
            os.close(fd)


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class BlobTransferFailed(Exception):
    """Ends a client's stream when the shared upstream transfer failed after
    its response started (the client sees a short body)."""

    def __init__(self, digest: str, reason: str):
        super().__init__(f"the upstream transfer of {digest} failed: {reason}")
