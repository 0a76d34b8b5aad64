"""Azure Blob Storage for cargohold.

Configure with (see the plugin's README for every key)::

    storage:
      azure:
        accountname: myaccount
        accountkey: base64key==
        container: registry

Content is stored as block blobs ``<rootdirectory>/<path>`` in the container;
see :class:`cargohold_storage_azure.driver.AzureDriver`.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING

from cargohold import hookimpl
from cargohold.storage.driver import StorageError
from cargohold_storage_azure.settings import (
    SCHEMA,
    SECTION,
    AzureSettings,
    parse_settings,
)

if TYPE_CHECKING:
    from cargohold_storage_azure.driver import AzureDriver

__all__ = ["AzureDriver", "AzureSettings", "create_driver", "driver_from_settings", "parse_settings"]

log = logging.getLogger(__name__)


def driver_from_settings(settings: AzureSettings, **client_extra) -> AzureDriver:
    """A driver for validated settings, without contacting the service.
    ``client_extra`` goes to the SDK client (tests pass request hooks)."""
    # The Azure SDK is imported only when Azure is the configured storage:
    # every installed plugin is loaded at start, and its ~27 MiB would
    # otherwise sit in every registry process.
    from cargohold_storage_azure.client import build_container_client
    from cargohold_storage_azure.driver import AzureDriver

    container, signer = build_container_client(settings, **client_extra)
    return AzureDriver(container, settings.rootdirectory, blocksize=settings.blocksize,
                       signer=signer, redirectexpiry=settings.redirectexpiry)


def create_driver(params: dict) -> AzureDriver:
    """Build the driver from the ``storage.azure`` config section.

    Raises ``ValueError`` naming the key for bad settings, and when the
    service rejects the credentials or the container.  A service that
    cannot be reached (or answers 5xx) is logged and does not stop start-up:
    requests fail with 503 until it is back.
    """
    driver = driver_from_settings(parse_settings(params))
    try:
        driver.prepare()
    except StorageError as exc:
        status = getattr(exc.__cause__, "status_code", None)
        if status in (401, 403):
            raise ValueError(f"{SECTION}: the service rejected the credentials ({exc})") from None
        if status is not None and status < 500:
            raise ValueError(f"{SECTION}.container: cannot use container "
                             f"{driver.container.container_name!r}: {exc}") from None
        log.warning("azure storage: %s; requests will fail until it is reachable", exc)
    return driver


@hookimpl
def cargohold_storage_drivers():
    return {"azure": create_driver}


@hookimpl
def cargohold_config_schema():
    return {SECTION: SCHEMA}


def __getattr__(name: str):
    if name == "AzureDriver":  # imported on first use, see driver_from_settings
        from cargohold_storage_azure.driver import AzureDriver

        return AzureDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
