"""Content discovery: tag listing and the (Docker) catalog, with pagination."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from .helpers import OCI_MANIFEST, assert_error, canonical, digest_of, next_link, unique_repo

# Lower-case letters and digits only: for these, "lexical (case-insensitive
# alphanumeric) order" (OCI "Listing Tags") and byte order agree.
TAGS = ["b", "a", "c10", "c2", "c1", "d", "0"]
SORTED = sorted(TAGS)


@pytest.fixture(scope="module")
def tagged(registry):
    from .helpers import Client
    client = Client(registry)
    repo = unique_repo()
    pushed = client.push_image(repo, None)
    for tag in TAGS:
        assert client.put_manifest(repo, tag, pushed.body, OCI_MANIFEST).status_code == 201
    return client, repo


def _walk(client, first_url):
    """Follow Link rel="next" from ``first_url``; return the pages."""
    pages, url = [], first_url
    for _ in range(50):
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        pages.append(resp)
        link = next_link(resp)
        if link is None:
            return pages
        url = client.url(link)
    raise AssertionError("pagination did not end")


# -- tags ------------------------------------------------------------------------


def test_tags_list(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].split(";")[0] == "application/json"
    body = resp.json()
    assert body["name"] == repo
    assert body["tags"] == SORTED


def test_tags_list_with_n(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"n": 3})
    assert resp.status_code == 200
    tags = resp.json()["tags"]
    # OCI: fewer than n only when there are fewer tags or a Link is given.
    assert tags == SORTED[:len(tags)]
    assert len(tags) == 3 or next_link(resp) is not None
    # Docker "Pagination": the Link header signals that more results exist.
    link = next_link(resp)
    assert link is not None, "no Link header although more tags exist"


def test_tags_pagination_via_link(tagged):
    client, repo = tagged
    pages = _walk(client, client.url(f"/v2/{repo}/tags/list?n=2"))
    collected = [t for p in pages for t in p.json()["tags"]]
    assert collected == SORTED
    for page in pages:
        assert len(page.json()["tags"]) <= 2
    first = next_link(pages[0])
    q = parse_qs(urlsplit(first).query)
    # Docker: Link: <<url>?n=<n from the request>&last=<last tag>>; rel="next"
    assert q.get("n") == ["2"]
    assert q.get("last") == [SORTED[1]]


def test_tags_with_last(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"last": "b"})
    assert resp.status_code == 200
    assert resp.json()["tags"] == SORTED[SORTED.index("b") + 1:]


def test_tags_with_n_and_last(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "b"})
    assert resp.status_code == 200
    assert resp.json()["tags"] == ["c1", "c10"]


def test_tags_with_last_that_is_not_a_tag(tagged):
    # Entries start strictly after `last` in lexical order.
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"last": "bb"})
    assert resp.status_code == 200
    assert resp.json()["tags"] == [t for t in SORTED if t > "bb"]


def test_tags_with_last_past_the_end(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"n": 5, "last": "zzz"})
    assert resp.status_code == 200
    assert resp.json()["tags"] in ([], None)
    assert next_link(resp) is None


def test_tags_with_n_zero(tagged):
    # OCI: "When n is zero, this endpoint MUST return an empty list, and MUST
    # NOT include a Link header."
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert resp.status_code == 200
    assert resp.json()["tags"] == []
    assert "Link" not in resp.headers


def test_tags_with_n_larger_than_total(tagged):
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list", params={"n": 1000})
    assert resp.status_code == 200
    assert resp.json()["tags"] == SORTED
    assert next_link(resp) is None


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", ""])
def test_tags_with_invalid_n(tagged, n):
    # Docker: PAGINATION_NUMBER_INVALID when n is not an integer or negative.
    client, repo = tagged
    resp = client.get(f"/v2/{repo}/tags/list?n={n}")
    if n == "" and resp.status_code == 200:
        return  # an empty n may reasonably mean "no limit"
    assert_error(resp, 400, ("PAGINATION_NUMBER_INVALID",))


def test_tags_of_unknown_repository(client):
    assert_error(client.get(f"/v2/{unique_repo()}/tags/list"), 404, "NAME_UNKNOWN")


def test_tags_of_repository_without_tags(client, repo):
    # A manifest pushed by digest only: the repository exists with no tags
    # (OCI: "The list of tags MAY be empty").
    pushed = client.push_image(repo, None)
    assert client.get_manifest(repo, pushed.digest).status_code == 200
    resp = client.get(f"/v2/{repo}/tags/list")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == repo
    assert resp.json()["tags"] in ([], None)


def test_tags_listing_case_order(client, repo):
    # OCI: "lexical order (i.e. case-insensitive alphanumeric order)".
    pushed = client.push_image(repo, None)
    for tag in ("Beta", "alpha", "Alpha2", "gamma"):
        assert client.put_manifest(repo, tag, pushed.body, OCI_MANIFEST).status_code == 201
    tags = client.tags(repo)
    assert sorted(tags, key=str.lower) == tags or sorted(tags) == tags, tags


# -- catalog (Docker "Listing Repositories") -------------------------------------


@pytest.fixture(scope="module")
def catalog_repos(registry):
    from .helpers import Client
    client = Client(registry)
    prefix = f"cat{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}/a", f"{prefix}/b/deep/name", f"{prefix}/c", f"{prefix}/b", f"{prefix}/d"]
    for name in names:
        client.push_image(name, "latest")
    return client, prefix, sorted(names)


def test_catalog_lists_repositories_sorted(catalog_repos):
    client, prefix, names = catalog_repos
    pages = _walk(client, client.url("/v2/_catalog?n=10000"))
    repos = [r for p in pages for r in p.json()["repositories"]]
    assert pages[0].headers["Content-Type"].split(";")[0] == "application/json"
    assert repos == sorted(repos)
    assert len(repos) == len(set(repos))
    ours = [r for r in repos if r.startswith(prefix + "/")]
    assert ours == names  # includes multi-component names


def test_catalog_pagination(catalog_repos):
    client, prefix, names = catalog_repos
    # `last` need not be a repository: entries start strictly after it.
    resp = client.get("/v2/_catalog", params={"n": 2, "last": prefix})
    assert resp.status_code == 200
    assert resp.json()["repositories"] == names[:2]
    link = next_link(resp)
    assert link is not None
    q = parse_qs(urlsplit(link).query)
    assert q.get("n") == ["2"] and q.get("last") == [names[1]]
    collected = list(resp.json()["repositories"])
    while link is not None and all(r.startswith(prefix + "/") for r in collected):
        page = client.get(client.url(link))
        assert page.status_code == 200, page.text
        repos = page.json()["repositories"]
        assert 0 < len(repos) <= 2 or next_link(page) is None
        collected += repos
        link = next_link(page)
    assert [r for r in collected if r.startswith(prefix + "/")] == names


def test_catalog_with_n_zero(catalog_repos):
    client, _, _ = catalog_repos
    resp = client.get("/v2/_catalog", params={"n": 0})
    assert resp.status_code == 200
    assert resp.json()["repositories"] == []
    assert "Link" not in resp.headers


def test_catalog_with_invalid_n(catalog_repos):
    client, _, _ = catalog_repos
    assert_error(client.get("/v2/_catalog?n=-3"), 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_does_not_list_repositories_with_only_failed_pushes(client):
    repo = unique_repo()
    body = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "x", "digest": digest_of(b"nope"), "size": 4}, "layers": []})
    client.put_manifest(repo, "x", body, OCI_MANIFEST)
    resp = client.get("/v2/_catalog", params={"n": 5, "last": repo[:-1]})
    assert resp.status_code == 200
    assert repo not in resp.json()["repositories"]
