"""The in-memory storage driver, for tests and throwaway registries
(``storage: {inmemory: {}}``).  Nothing survives a restart."""

from __future__ import annotations

from cargohold import hookimpl


@hookimpl
def cargohold_storage_drivers():
    from cargohold.storage.inmemory import InMemoryDriver

    return {"inmemory": lambda params: InMemoryDriver()}


@hookimpl
def cargohold_config_schema():
    return {"storage.inmemory": {}}
