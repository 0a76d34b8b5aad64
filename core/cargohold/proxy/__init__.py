"""Pull-through cache: repositories mirrored from upstream registries.

Configured by the ``proxy`` section (none: nothing here runs).  The simple
form is the reference registry's (``remoteurl``, ``username``, ``password``,
``ttl``): every repository mirrors one upstream.  ``upstreams`` lists
several, each serving the local repositories below its ``prefix``
(``dockerhub/library/alpine`` is ``library/alpine`` upstream) and/or the
requests naming its ``ns`` (``?ns=docker.io``, as containerd sends to a
mirror; answered with ``OCI-Namespace: docker.io``).  Other repositories
stay ordinary, pushable ones.

The pieces:

* :mod:`cargohold.proxy.upstream`: upstream settings and the HTTP client
  with its authentication;
* :mod:`cargohold.proxy.cache`: what is served from storage, what is
  fetched, expiry (:meth:`PullThrough.purge`);
* this module: :class:`PullThrough`, which the app installs in front of its
  ``/v2/`` handlers (:func:`install`).

Client authentication and access rules apply to proxied repositories as to
any other (they run before the cache); pushes, deletes and uploads into a
proxied repository get ``UNSUPPORTED``.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qs

from flask import Flask, Response, request

from cargohold import events
from cargohold.api import listing
from cargohold.errors import Unsupported
from cargohold.metrics import SHARED_DIR_ENV
from cargohold.proxy.cache import PullThroughCache, Route
from cargohold.proxy.upstream import Upstream, UpstreamClient, upstreams_from_config
from cargohold.reference import check_digest, check_tag, is_digest

__all__ = ["EXTENSION", "PullThrough", "install"]

log = logging.getLogger("cargohold.proxy")

#: Where the app keeps its :class:`PullThrough` (``app.extensions``).
EXTENSION = "cargohold.proxy"

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class PullThrough:
    """The pull-through cache of one app: upstream routing, the
    ``before_request`` step of ``/v2/`` requests, and expiry."""

    def __init__(self, upstreams: list[Upstream], registry, metrics=None, manifest_limit: int = 4 << 20):
        self.upstreams = upstreams
        self.clients = {u.url + "|" + u.prefix: UpstreamClient(u) for u in upstreams}
        self.by_ns = {ns: u for u in upstreams for ns in u.namespaces}
        shared = os.environ.get(SHARED_DIR_ENV)  # set by the supervisor for its workers
        self.cache = PullThroughCache(registry, metrics, manifest_limit=manifest_limit,
                                      shared_spool=os.path.join(shared, "proxy") if shared else None)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    # -- routing -------------------------------------------------------------

    def route(self, name: str) -> Route | None:
        """The upstream serving local repository ``name``, if any."""
        for upstream in self.upstreams:
            if upstream.serves(name):
                return Route(upstream, self.clients[upstream.url + "|" + upstream.prefix], name,
                             upstream.remote_name(name))
        return None

    def local_routes(self) -> list[Route]:
        """Every cached repository with the route serving it."""
        found = []
        for name in self.cache.registry.repositories():
            route = self.route(name)
            if route is not None:
                found.append(route)
        return found

    # -- requests ------------------------------------------------------------

    def before_request(self) -> Response | None:
        """Runs after authorization for every ``/v2/`` request.  Writes into
        a proxied repository are refused; pulls are prepared (manifest
        stored, tag revalidated, blob link made) so that the ordinary
        handler serves them from storage, or answered here (a blob streamed
        from the upstream, the upstream's tags or referrers)."""
        name = (request.view_args or {}).get("name")
        route = self.route(name) if name is not None else None
        if route is None:
            return None
        if request.method in _WRITES:
            raise Unsupported(
                f"{name} is a pull-through cache of {route.upstream.url}: pushes and deletes are refused",
                detail={"repository": name, "upstream": route.upstream.url})
        endpoint = request.endpoint
        args = request.view_args
        if endpoint == "v2.get_manifest":
            reference = args["reference"]
            by_digest = is_digest(reference)
            check_digest(reference) if by_digest else check_tag(reference)
            source = self.cache.manifest(route, reference, by_digest)
            if source is not None:  # the pull event names the upstream
                request.environ[events.SOURCE_URL_KEY] = source
        elif endpoint == "v2.get_blob":
            return self._blob(route, check_digest(args["digest"]))
        elif endpoint == "v2.tags_list":
            return self._tags(route)
        elif endpoint == "v2.referrers":
            return self._referrers(route, check_digest(args["digest"]))
        return None

    def _blob(self, route: Route, digest: str) -> Response | None:
        if self.cache.blob_cached(route, digest):
            return None  # served from storage by the ordinary handler
        headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
        if request.method == "HEAD":
            size = self.cache.blob_head(route, digest)
            resp = Response(b"", status=200, content_type="application/octet-stream", headers=headers)
            if size is not None:
                resp.headers["Content-Length"] = str(size)
            return resp
        fetch = self.cache.blob_fetch(route, digest)
        if fetch.size is not None:
            headers["Content-Length"] = str(fetch.size)
        request.environ[events.SOURCE_URL_KEY] = route.client.url(route.remote, f"blobs/{digest}")
        events.emit(events.PULL, route.local, digest, events.BLOB_MEDIA_TYPE, fetch.size)
        return Response(fetch.stream(), status=200, content_type="application/octet-stream", headers=headers,
                        direct_passthrough=True)

    def _tags(self, route: Route) -> Response | None:
        tags = self.cache.tags(route)
        if tags is None:
            return None
        page, link = listing.page(tags, f"/v2/{route.local}/tags/list")
        return listing.json_response({"name": route.local, "tags": page}, link)

    def _referrers(self, route: Route, digest: str) -> Response | None:
        params = {"artifactType": request.args.getlist("artifactType")} if "artifactType" in request.args else None
        found = self.cache.referrers(route, digest, params)
        if found is None:
            return None
        body, headers = found
        return Response(body, status=200, headers=headers)

    # -- expiry --------------------------------------------------------------

    def purge(self, now: float | None = None, dry_run: bool = False) -> list[str]:
        """Unlink the cached manifests and blobs not pulled within their
        upstream's ``ttl`` (see :meth:`PullThroughCache.purge`); garbage
        collection then removes the bytes no repository links.  Returns
        ``repository@digest`` of everything unlinked."""
        return self.cache.purge(self.local_routes(), now=now, dry_run=dry_run)


class NamespaceMiddleware:
    """Serves ``/v2/<name>/...?ns=<ns>`` from the local repository
    ``<prefix><name>`` of the upstream answering ``ns``, and says so with
    ``OCI-Namespace: <ns>``.  An ``ns`` no upstream answers is ignored (the
    spec lets a registry do so)."""

    def __init__(self, wsgi_app, by_ns: dict[str, Upstream]):
        self.wsgi_app, self.by_ns = wsgi_app, by_ns

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        path = environ.get("PATH_INFO", "")
        if "ns=" not in query or not path.startswith("/v2/") or path in ("/v2/", "/v2/_catalog"):
            return self.wsgi_app(environ, start_response)
        ns = (parse_qs(query).get("ns") or [""])[0]
        upstream = self.by_ns.get(ns)
        if upstream is None:
            return self.wsgi_app(environ, start_response)
        environ["PATH_INFO"] = "/v2/" + upstream.prefix + path[len("/v2/"):]

        def answering(status, headers, exc_info=None):
            return start_response(status, [*headers, ("OCI-Namespace", ns)], exc_info)

        return self.wsgi_app(environ, answering)


def install(app: Flask, config: dict) -> PullThrough | None:
    """Set up the pull-through cache of ``app`` from its validated
    ``config`` (nothing without a ``proxy`` section): after the ``/v2/``
    blueprint's own ``before_request`` steps (authorization, read-only
    mode), and the ``ns`` rewrite innermost in its WSGI stack."""
    upstreams = upstreams_from_config(config.get("proxy"))
    if not upstreams:
        return None
    state = app.extensions["cargohold"]
    proxy = PullThrough(upstreams, state.registry, state.metrics,
                        manifest_limit=config["validation"]["manifests"]["maxsize"])
    app.extensions[EXTENSION] = proxy
    app.before_request_funcs.setdefault("v2", []).append(proxy.before_request)
    if proxy.by_ns:
        app.wsgi_app = NamespaceMiddleware(app.wsgi_app, proxy.by_ns)
    for upstream in upstreams:
        log.info("pull-through cache: %s from %s%s", f"{upstream.prefix}*" if upstream.prefix else "every repository",
                 upstream.url, f" (ns: {', '.join(upstream.namespaces)})" if upstream.namespaces else "")
    return proxy

