"""Fixtures: live ``cargohold serve`` processes on loopback.

``registry`` is one server for the whole session (deletes enabled); tests
isolate themselves with unique repository names.  ``registry_nodelete`` is a
second server, per module, with ``storage.delete.enabled`` off.
"""

from __future__ import annotations

import pytest

from cargohold.testing.server import LiveRegistry

from .helpers import Client, unique_repo


def _start(env: dict | None = None) -> LiveRegistry:
    live = LiveRegistry(env=env)
    try:
        live.start()
    except Exception:
        live.cleanup()
        raise
    return live


@pytest.fixture(scope="session")
def registry():
    """Base URL (``http://127.0.0.1:<port>``) of a registry with deletes enabled."""
    live = _start()
    try:
        yield live.url
    finally:
        live.stop()
        live.cleanup()


@pytest.fixture(scope="session")
def client(registry) -> Client:
    return Client(registry)


@pytest.fixture(scope="module")
def registry_nodelete():
    """Base URL of a registry started with CARGOHOLD_STORAGE_DELETE_ENABLED=false."""
    live = _start({"CARGOHOLD_STORAGE_DELETE_ENABLED": "false"})
    try:
        yield live.url
    finally:
        live.stop()
        live.cleanup()


@pytest.fixture()
def nodelete_client(registry_nodelete) -> Client:
    return Client(registry_nodelete)


@pytest.fixture()
def repo() -> str:
    """A fresh multi-component repository name."""
    return unique_repo()
