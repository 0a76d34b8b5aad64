"""Tests of the listing index (:mod:`cargohold.registry.catalog`) that every
object-store plugin runs against its real backend.

Subclass :class:`ListingIndexSuite` and provide a ``listing_backend``
fixture returning a :class:`ListingBackend`: a ``storage`` configuration
section whose endpoint is a :class:`~cargohold.testing.counting.CountingProxy`
in front of the emulator, that proxy, and a fresh, empty store per test::

    class TestS3ListingIndex(ListingIndexSuite):
        @pytest.fixture
        def listing_backend(self, moto_server):
            ...

The suite checks the catalog and tags lists after pushes and deletes made
through two apps sharing the store, that concurrent writers lose no update,
that a missing or corrupt index falls back to walking and is rebuilt, the
``cargohold index verify``/``rebuild`` commands, and that a page costs a
bounded number of requests to the backend whatever the number of
repositories or tags.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Protocol

import pytest
import yaml

from cargohold.app import create_app
from cargohold.registry.catalog import Listings
from cargohold.storage import paths
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import StorageDriver
from cargohold.testing.counting import CountingProxy

#: Requests to the backend a listing page may cost: a read of the next
#: generation, or a listing of the generations and a read of the newest.
MAX_REQUESTS_PER_PAGE = 3


class ListingBackend(Protocol):
    #: ``{"<driver>": {...}}``: the driver's section, pointing at :attr:`proxy`.
    storage: dict
    proxy: CountingProxy

    def make_driver(self) -> StorageDriver:
        """A driver over the same store, through the proxy."""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(client, name: str, tags: list[str], seed: str = "") -> str:
    """A one-layer image into ``name`` under ``tags``; returns its digest."""
    layer = f"layer {name} {seed}".encode()
    config = json.dumps({"seed": seed}).encode()
    for data in (layer, config):
        resp = client.post(f"/v2/{name}/blobs/uploads/?digest={_digest(data)}", data=data,
                           headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 201, resp.get_data(as_text=True)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}]}).encode()
    for tag in tags or [_digest(manifest)]:
        resp = client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status_code == 201, resp.get_data(as_text=True)
    return _digest(manifest)


class ListingIndexSuite:
    """See the module docstring."""

    @pytest.fixture
    def listing_backend(self) -> ListingBackend:
        raise NotImplementedError(f"{type(self).__name__} must define a `listing_backend` fixture")

    @pytest.fixture
    def make_app(self, listing_backend):
        apps = []

        def make():
            app = create_app({"storage": {**listing_backend.storage, "delete": {"enabled": True},
                                          "listing": {"mode": "index"}}}, environ={})
            apps.append(app)
            return app

        yield make
        for app in apps:
            app.cargohold_shutdown()

    @staticmethod
    def listings(app) -> Listings:
        return app.extensions["cargohold"].registry.listings

    # -- correctness ------------------------------------------------------------------

    def test_pushes_and_deletes_through_two_instances(self, make_app):
        a, b = make_app(), make_app()
        ca, cb = a.test_client(), b.test_client()
        first = push(ca, "team/app", ["1.0", "latest"], seed="one")
        push(cb, "team/app", ["2.0"], seed="two")
        push(cb, "team/other", [], seed="untagged")
        assert cb.get("/v2/_catalog").get_json() == {"repositories": ["team/app", "team/other"]}
        assert ca.get("/v2/team/app/tags/list").get_json()["tags"] == ["1.0", "2.0", "latest"]
        assert ca.get("/v2/team/other/tags/list").get_json()["tags"] == []
        assert cb.delete(f"/v2/team/app/manifests/{first}").status_code == 202
        assert ca.get("/v2/team/app/tags/list").get_json()["tags"] == ["2.0"]
        assert cb.get("/v2/team/app/tags/list").get_json()["tags"] == ["2.0"]
        assert ca.get("/v2/nothing/here/tags/list").status_code == 404
        assert self.listings(a).verify() == []

    def test_concurrent_writers_lose_no_update(self, listing_backend):
        instances = [Listings(CheckedDriver(listing_backend.make_driver()), "index") for _ in range(2)]
        digest = _digest(b"x")
        instances[0].driver.put_content(paths.layer_link("race/app", digest), digest.encode())
        errors = []

        def writer(i: int) -> None:
            try:
                listings = instances[i % 2]
                for k in range(8):
                    listings.tags_changed("race/app", added=[f"t{i}-{k}"])
                    listings.repository_used(f"race/r{i}")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        expected = sorted(f"t{i}-{k}" for i in range(4) for k in range(8))
        fresh = Listings(CheckedDriver(listing_backend.make_driver()), "index")
        assert fresh._tags_index("race/app").read() == expected
        assert fresh._catalog.read() == ["race/app"] + [f"race/r{i}" for i in range(4)]

    def test_missing_or_corrupt_index_falls_back_and_is_rebuilt(self, make_app, listing_backend):
        app = make_app()
        client = app.test_client()
        push(client, "lost/app", ["a", "b"])
        driver = CheckedDriver(listing_backend.make_driver())
        driver.delete(paths.INDEX)
        other = make_app().test_client()  # nothing cached
        assert other.get("/v2/_catalog").get_json()["repositories"] == ["lost/app"]
        assert other.get("/v2/lost/app/tags/list").get_json()["tags"] == ["a", "b"]
        assert driver.list(paths.INDEX_CATALOG) and driver.list(paths.index_tags("lost/app"))
        # A newest generation that is not an index: walked, and written again.
        newest = max(paths.index_generation_number(p) for p in driver.list(paths.index_tags("lost/app")))
        driver.put_content(paths.index_generation(paths.index_tags("lost/app"), newest + 1), b"{not json")
        third = make_app().test_client()
        assert third.get("/v2/lost/app/tags/list").get_json()["tags"] == ["a", "b"]
        assert paths.index_generation(paths.index_tags("lost/app"), newest + 2) in driver.list(
            paths.index_tags("lost/app"))

    def test_repair_commands(self, make_app, listing_backend, tmp_path, capsys):
        from cargohold.cli import main

        client = make_app().test_client()
        digest = push(client, "repair/app", ["v1"])
        # Another registry (the reference, an older cargohold) adds a tag.
        driver = CheckedDriver(listing_backend.make_driver())
        driver.put_content(paths.tag_link("repair/app", "v2"), digest.encode())
        driver.put_content(paths.layer_link("repair/new", digest), digest.encode())
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump({"storage": {**listing_backend.storage, "listing": {"mode": "index"}}}))
        assert main(["index", "verify", "-c", str(config)]) == 1
        out = capsys.readouterr().out
        assert "catalog: repair/new missing" in out and "tags of repair/app: missing ['v2']" in out
        assert main(["index", "rebuild", "-c", str(config)]) == 0
        assert main(["index", "verify", "-c", str(config)]) == 0
        fresh = make_app().test_client()
        assert fresh.get("/v2/repair/app/tags/list").get_json()["tags"] == ["v1", "v2"]
        assert fresh.get("/v2/_catalog").get_json()["repositories"] == ["repair/app", "repair/new"]

    # -- cost ---------------------------------------------------------------------------

    @pytest.mark.parametrize("count", [25, 250])
    def test_a_page_costs_a_bounded_number_of_requests(self, make_app, listing_backend, count):
        """Repositories and tags written straight into the layout, indexed
        by a rebuild; then every page of a walk is counted, with the list
        changed by another instance half way."""
        driver = CheckedDriver(listing_backend.make_driver())
        digest = _digest(b"x")
        names = [f"org/app{i:04d}" for i in range(count)]
        tags = [f"v{i:04d}" for i in range(count)]
        for name in names:
            driver.put_content(paths.layer_link(name, digest), digest.encode())
        for tag in tags:
            driver.put_content(paths.tag_link("many/tags", tag), digest.encode())
        writer, reader = make_app(), make_app()
        self.listings(writer).rebuild()
        client = reader.test_client()
        proxy = listing_backend.proxy
        for path, key, expected in (("/v2/_catalog", "repositories", sorted(names + ["many/tags"])),
                                    ("/v2/many/tags/tags/list", "tags", tags)):
            costs, items, url = [], [], f"{path}?n=10"
            while url:
                before = proxy.count()
                resp = client.get(url)
                costs.append(proxy.count() - before)
                items += resp.get_json()[key]
                if len(costs) == 2:  # another instance changes the list
                    self.listings(writer).tags_changed("many/tags", added=["zz-late"])
                    self.listings(writer).repository_used("zz/late")
                    expected = expected + ["zz/late" if key == "repositories" else "zz-late"]
                link = resp.headers.get("Link")
                url = "/v2/" + link.split("/v2/", 1)[1].split(">", 1)[0] if link else None
            assert items == expected
            assert max(costs) <= MAX_REQUESTS_PER_PAGE, costs
            assert sum(costs) <= len(costs) + 2 * MAX_REQUESTS_PER_PAGE, costs
