"""Listing the repositories of the registry."""

from __future__ import annotations

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
