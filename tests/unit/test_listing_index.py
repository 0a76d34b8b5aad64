"""The listing index's own rules (cargohold.registry.catalog) on the
in-memory and filesystem drivers; the object-store suites run
cargohold.testing.listing against moto and Azurite."""

from __future__ import annotations

import json
import time

import pytest

from cargohold.registry import catalog
from cargohold.registry.catalog import IndexedList, Listings, repositories, scan_layout, walk_tags
from cargohold.storage import paths
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.inmemory import InMemoryDriver
from cargohold_storage_filesystem import FilesystemDriver

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def driver():
    return CheckedDriver(InMemoryDriver())


def layout(driver, repos: dict[str, list[str]]) -> None:
    for name, tags in repos.items():
        driver.put_content(paths.layer_link(name, DIGEST), DIGEST.encode())
        for tag in tags:
            driver.put_content(paths.tag_link(name, tag), DIGEST.encode())


def test_one_walk_of_the_layout_says_what_walking_each_directory_says(driver):
    layout(driver, {"a": ["1", "2"], "a/b": ["x"], "a-b": [], "deep/er/name": ["latest"]})
    driver.put_content(paths.upload_startedat("only/uploads", "u1"), b"now")  # not a repository
    found = scan_layout(driver)
    assert list(found) == repositories(driver) == ["a", "a-b", "a/b", "deep/er/name"]
    assert found == {name: walk_tags(driver, name) for name in found}
    assert walk_tags(driver, "no/such") is None


def test_modes(driver, tmp_path):
    assert Listings(driver).indexed  # not a local disk, and create() is there
    assert not Listings(driver, "walk").indexed
    fs = CheckedDriver(FilesystemDriver(str(tmp_path)))
    assert not Listings(fs).indexed  # local disks walk
    assert Listings(fs, "index").indexed
    with pytest.raises(ValueError, match="storage.listing.mode"):
        Listings(driver, "sometimes")


def test_filesystem_in_index_mode_agrees_with_walking(tmp_path):
    fs = CheckedDriver(FilesystemDriver(str(tmp_path)))
    layout(fs, {"team/app": ["v1"]})
    indexed = Listings(fs, "index")
    assert indexed.repositories() == ["team/app"] and indexed.tags("team/app") == ["v1"]
    fs.put_content(paths.tag_link("team/app", "v2"), DIGEST.encode())
    indexed.tags_changed("team/app", added=["v2"])
    assert Listings(fs, "index").tags("team/app") == ["v1", "v2"] == Listings(fs, "walk").tags("team/app")
    assert indexed.verify() == []


def test_old_generations_go_only_after_the_prune_age(driver, monkeypatch):
    layout(driver, {"r": []})
    index = IndexedList(driver, paths.index_tags("r"), catalog.LRU(8))
    for i in range(3):
        index.update(add=[f"t{i}"], walk=list)
    gens = [g for g, _ in index.generations()]
    assert gens == [1, 2, 3]  # all young: kept, so no writer can re-create one
    monkeypatch.setattr(catalog, "PRUNE_AGE", 0.0)
    time.sleep(0.01)
    index.update(add=["t3"])
    assert [g for g, _ in index.generations()] == [3, 4]  # the newest's predecessor stays
    assert index.read() == ["t0", "t1", "t2", "t3"]


def test_a_stalled_writer_applies_its_change_again(driver, monkeypatch):
    """A writer that saw generation 1 and wrote 2 after generation 2 had been
    written and pruned (and 3 written): its 2 is older than 3, so it writes
    its change again on top."""
    layout(driver, {"r": []})
    index = IndexedList(driver, paths.index_tags("r"), catalog.LRU(8))
    index.update(add=["a"], walk=list)
    seen = index.generations()
    index.update(add=["b"])
    index.update(add=["c"])
    driver.delete(paths.index_generation(index.directory, 2))
    assert not index.write_after(seen, ["a", "stale"], time.monotonic() - catalog.PRUNE_AGE)
    index.update(add=["stale"])
    assert IndexedList(driver, index.directory, catalog.LRU(8)).read() == ["a", "b", "c", "stale"]


def test_a_cached_list_is_checked_with_one_read(driver):
    layout(driver, {"r": ["x"]})
    listings = Listings(driver, "index")
    assert listings.tags("r") == ["x"]
    before = dict(driver.stats)
    assert listings.tags("r") == ["x"]
    calls = {op: n - before.get(op, (0, 0))[0] for op, (n, _) in driver.stats.items() if n > before.get(op, (0, 0))[0]}
    assert calls == {"get_content": 1}
    other = Listings(driver, "index")
    driver.put_content(paths.tag_link("r", "y"), DIGEST.encode())
    other.tags_changed("r", added=["y"])
    assert listings.tags("r") == ["x", "y"]  # the next generation, read by the probe


def test_unreadable_generation_is_walked_and_replaced(driver):
    layout(driver, {"r": ["x"]})
    listings = Listings(driver, "index")
    assert listings.tags("r") == ["x"]
    directory = paths.index_tags("r")
    driver.put_content(paths.index_generation(directory, 2), json.dumps({"format": 1, "names": ["b", "a"]}).encode())
    assert Listings(driver, "index").tags("r") == ["x"]
    assert json.loads(driver.get_content(paths.index_generation(directory, 3)))["names"] == ["x"]
