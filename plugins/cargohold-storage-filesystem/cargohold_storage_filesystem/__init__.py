"""Local filesystem storage for cargohold.

Configure with::

    storage:
      filesystem:
        rootdirectory: /var/lib/cargohold

Content is stored at ``<rootdirectory>/<path>``; see
:class:`cargohold_storage_filesystem.driver.FilesystemDriver`.
"""

from __future__ import annotations

import os

from cargohold import hookimpl
from cargohold_storage_filesystem.driver import FilesystemDriver

__all__ = ["FilesystemDriver"]

_KEY = "storage.filesystem.rootdirectory"


def create_driver(params: dict) -> FilesystemDriver:
    """Build the driver from the ``storage.filesystem`` config section.

    Raises ``ValueError`` naming the key when ``rootdirectory`` is missing or
    cannot be created or written.
    """
    unknown = sorted(set(params) - {"rootdirectory"})
    if unknown:
        raise ValueError(f"storage.filesystem.{unknown[0]}: unknown setting")
    root = params.get("rootdirectory")
    if not isinstance(root, str) or not root:
        raise ValueError(f"{_KEY}: required, the directory to keep the registry's data in")
    try:
        driver = FilesystemDriver(root)
    except OSError as exc:
        raise ValueError(f"{_KEY}: cannot use {root!r}: {exc.strerror or exc}") from exc
    if not os.access(driver.root, os.W_OK | os.X_OK):
        raise ValueError(f"{_KEY}: {root!r} is not writable")
    return driver


@hookimpl
def cargohold_storage_drivers():
    return {"filesystem": create_driver}


@hookimpl
def cargohold_config_schema():
    return {"storage.filesystem": {"rootdirectory": str}}
