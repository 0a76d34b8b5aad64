"""The in-memory storage driver, for tests and throwaway registries
(``storage: {inmemory: {}}``).  Nothing survives a restart."""

from __future__ import annotations

from cargohold import hookimpl


@hookimpl
def cargohold_storage_drivers():
    from cargohold.storage.inmemory import create_driver

    return {"inmemory": create_driver}


@hookimpl
def cargohold_config_schema():
    return {"storage.inmemory": {}}
