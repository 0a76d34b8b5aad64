"""The directory-listing cache: reused only while the directory is unchanged."""

from __future__ import annotations

import time

from cargohold.storage import listcache
from cargohold.storage.inmemory import InMemoryDriver
from cargohold.storage.listcache import ListingCache


class CountingDriver(InMemoryDriver):
    def __init__(self):
        super().__init__()
        self.lists = 0

    def list(self, path):
        self.lists += 1
        return super().list(path)


def test_a_quiet_directory_is_listed_once(monkeypatch):
    driver = CountingDriver()
    for tag in ("b", "a", "c"):
        driver.put_content(f"/tags/{tag}/link", b"x")
    monkeypatch.setattr(listcache, "QUIET_SECONDS", 0.0)
    time.sleep(0.01)
    cache = ListingCache(driver)
    assert cache.names("/tags") == ["a", "b", "c"]
    assert cache.names("/tags") == ["a", "b", "c"]
    assert driver.lists == 1


def test_a_change_invalidates_the_cached_listing(monkeypatch):
    driver = CountingDriver()
    driver.put_content("/tags/a/link", b"x")
    monkeypatch.setattr(listcache, "QUIET_SECONDS", 0.0)
    time.sleep(0.01)
    cache = ListingCache(driver)
    assert cache.names("/tags") == ["a"]
    time.sleep(0.01)
    driver.put_content("/tags/b/link", b"x")
    assert cache.names("/tags") == ["a", "b"]
    time.sleep(0.01)
    driver.delete("/tags/a")
    assert cache.names("/tags") == ["b"]


def test_a_recently_changed_directory_is_not_cached():
    # Same-tick changes can share a modtime: only quiet directories are cached.
    driver = CountingDriver()
    driver.put_content("/tags/a/link", b"x")
    cache = ListingCache(driver)
    cache.names("/tags")
    cache.names("/tags")
    assert driver.lists == 2
