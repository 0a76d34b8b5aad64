"""Tags list, catalog and referrers: paginated listings."""

from __future__ import annotations

import bisect
import json
from urllib.parse import quote

from flask import Response, g, request

from cargohold.api.base import location, registry, v2
from cargohold.errors import PaginationNumberInvalid
from cargohold.manifests import OCI_INDEX
from cargohold.reference import check_digest


def _page(items: list[str], path: str) -> tuple[list[str], str | None]:
    """Apply ``n``/``last`` to a sorted list; return the page and the ``Link``
    header for the next one, if any."""
    args = request.args
    last = args.get("last")
    if last:
        items = items[bisect.bisect_right(items, last):]
    raw_n = args.get("n")
    if raw_n is None or raw_n == "":
        return items, None
    try:
        n = int(raw_n)
    except ValueError:
        raise PaginationNumberInvalid(detail={"n": raw_n[:50]})
    if n < 0:
        raise PaginationNumberInvalid(detail={"n": raw_n[:50]})
    page = items[:n]
    if len(items) > n and page:
        return page, f'<{location(path)}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
    return page, None


def _json(doc: dict, link: str | None = None, content_type: str = "application/json") -> Response:
    resp = Response(json.dumps(doc), status=200, content_type=content_type)
    if link:
        resp.headers["Link"] = link
    return resp


@v2.route("/<path:name>/tags/list", methods=["GET"])
def tags_list(name: str):
    tags = registry().manifests.tags(name)
    page, link = _page(tags, f"/v2/{name}/tags/list")
    return _json({"name": name, "tags": page}, link)


@v2.route("/_catalog", methods=["GET"])
def catalog():
    grant = g.grant
    names = [n for n in registry().repositories() if grant.may_pull(n)]
    page, link = _page(names, "/v2/_catalog")
    return _json({"repositories": page}, link)


@v2.route("/<path:name>/referrers/<digest>", methods=["GET"])
def referrers(name: str, digest: str):
    check_digest(digest)
    descriptors = registry().manifests.referrers(name, digest)
    wanted = request.args.getlist("artifactType")
    if wanted:
        descriptors = [d for d in descriptors if d.get("artifactType") in wanted]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    resp = _json(index, content_type=OCI_INDEX)
    if wanted:
        resp.headers["OCI-Filters-Applied"] = "artifactType"
    return resp


@v2.route("/", methods=["GET", "HEAD"])
def base():
    return _json({})


#: For other ``/v2/`` handlers serving listings (the pull-through cache's
#: upstream tags): the same pagination and JSON responses.
page = _page
json_response = _json
