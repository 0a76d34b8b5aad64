"""Fixtures for in-process API tests, on the test kit's
(:mod:`cargohold.testing.plugin`, loaded by its pytest entry point): a fresh
app per test on in-memory storage (deletes enabled), its test client, and
``make_app`` for tests that need other settings or plugins present while
the app is built."""

from __future__ import annotations

import pytest

from cargohold.testing.plugin import BASE_CONFIG, BufferedClient

__all__ = ["BASE_CONFIG"]


@pytest.fixture
def make_app(cargohold_make_app):
    """``make_app(config=None, plugins=())`` builds an app from ``config``
    (overrides on the defaults; :data:`BASE_CONFIG` when ``None``) whose
    plugin manager also holds ``plugins``, registered after the installed
    ones.  A plugin object may set ``name``.  The environment is not read."""
    return cargohold_make_app


@pytest.fixture
def app(cargohold_app):
    return cargohold_app


@pytest.fixture
def client(app):
    """A test client that reads each response whole and closes it, as a server does."""
    return BufferedClient(app, app.response_class, use_cookies=False)


@pytest.fixture
def state(app):
    """The app's ``RegistryState`` (plugin manager, driver, registry)."""
    return app.extensions["cargohold"]
