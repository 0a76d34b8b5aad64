"""Listing the repositories of the registry."""

from __future__ import annotations

import heapq
from typing import Iterator

from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver


def repositories(driver: StorageDriver) -> list[str]:
    """Every repository name, in lexical order.  A repository is a directory
    below ``repositories/`` holding ``_manifests`` or ``_layers``; names may
    nest (``org/team/app``), so the walk descends into every directory whose
    name does not start with ``_``."""
    prefix = paths.REPOSITORIES + "/"
    found = []
    stack = [paths.REPOSITORIES]
    while stack:
        d = stack.pop()
        try:
            children = driver.list(d)
        except PathNotFound:
            continue
        is_repo = False
        for child in children:
            leaf = child.rpartition("/")[2]
            if leaf.startswith("_"):
                if leaf in ("_manifests", "_layers"):
                    is_repo = True
            else:
                stack.append(child)
        if is_repo:
            found.append(d[len(prefix):])
    found.sort()
    return found


def iter_repositories(driver: StorageDriver, last: str | None = None) -> Iterator[str]:
    """The repository names after ``last`` (all with ``None``), lazily and
    in the lexical order of :func:`repositories`: a page of ``n`` names
    lists about ``n`` directories, not the whole store.

    Every directory is a heap entry keyed by its own name, expanded (listed)
    when it is the smallest key left: its name, if it is a repository, is
    then the smallest still to come, and its children's names are larger.
    A directory whose whole subtree sorts at or before ``last`` is never
    listed."""
    prefix = paths.REPOSITORIES + "/"
    heap: list[tuple[str, bool]] = []  # (name, is a repository to yield); False: a directory to expand

    def expand(d: str) -> None:
        try:
            children = driver.list(paths.REPOSITORIES + "/" + d if d else paths.REPOSITORIES)
        except PathNotFound:
            return
        for child in children:
            leaf = child.rpartition("/")[2]
            if leaf.startswith("_"):
                if leaf in ("_manifests", "_layers") and d and (last is None or d > last):
                    heapq.heappush(heap, (d, True))
                continue
            name = child[len(prefix):]
            # Skip a subtree that sorts wholly at or before last: name itself
            # and every name/..., when last is past name + "/" without being
            # inside it.
            if last is not None and name < last and last > name + "/" and not last.startswith(name + "/"):
                continue
            heapq.heappush(heap, (name, False))

    expand("")
    seen = None
    while heap:
        name, is_repository = heapq.heappop(heap)
        if is_repository:
            if name != seen:  # _manifests and _layers both mark it
                seen = name
                yield name
        else:
            expand(name)
