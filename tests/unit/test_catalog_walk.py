"""The lazy, paginated repository walk agrees with the full listing."""

from __future__ import annotations

import pytest

from cargohold.registry.catalog import iter_repositories, repositories
from cargohold.storage import paths
from cargohold.storage.inmemory import InMemoryDriver

# Nested names, names that are prefixes of others, and separators that sort
# before "/" ("-", ".", "_") next to it: the walk's order must still be the
# plain lexical order of the full names.
NAMES = ["a", "a-x", "a.b/c", "a/b", "a/b/c", "a/b-c", "a/b.d", "a/b__e/f", "a0", "ab/c", "b/c/d/e",
         "lib/app", "lib-extra/app", "lib/app-2", "lib/app/sub", "z"]


@pytest.fixture
def driver():
    d = InMemoryDriver()
    for i, name in enumerate(NAMES):
        if i % 3:
            d.put_content(paths.tag_link(name, "latest"), b"sha256:" + b"0" * 64)
        else:
            d.put_content(paths.layer_link(name, "sha256:" + "1" * 64), b"x")
    d.put_content(paths.tag_link("a/b", "other"), b"sha256:" + b"0" * 64)
    # A directory that holds no repository at all is not one.
    d.put_content(paths.REPOSITORIES + "/empty/dir/_uploads/x/data", b"")
    return d


def test_full_walk_is_the_sorted_listing(driver):
    assert repositories(driver) == sorted(NAMES)
    assert list(iter_repositories(driver)) == sorted(NAMES)


@pytest.mark.parametrize("last", sorted(NAMES) + ["", "0", "a-", "a/", "a/b/", "a/c", "lib/", "lib/app/", "zz"])
def test_walk_after_last_matches_the_listing(driver, last):
    assert list(iter_repositories(driver, last or None)) == [n for n in sorted(NAMES) if n > last]


def test_a_page_lists_only_what_it_needs():
    d = InMemoryDriver()
    for org in range(20):
        for app in range(20):
            d.put_content(paths.tag_link(f"org{org:02d}/app{app:02d}", "t"), b"sha256:" + b"0" * 64)
    listed = []
    original = d.list

    def counting(path):
        listed.append(path)
        return original(path)

    d.list = counting
    walk = iter_repositories(d, "org10/app04")
    page = [next(walk) for _ in range(5)]
    assert page == [f"org10/app{i:02d}" for i in range(5, 10)]
    # The root, org10 and the five repositories (and one more waiting in the
    # heap), not the 400 repositories of the store.
    assert len(listed) < 12, listed
