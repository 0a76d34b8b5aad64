"""Fixtures for in-process API tests: a fresh app per test on in-memory
storage (deletes enabled), its Flask test client, and ``make_app`` for tests
that need other settings or plugins present while the app is built."""

from __future__ import annotations

import pytest

import cargohold.app as app_module
from cargohold.app import create_app
from cargohold.plugins import build_plugin_manager

BASE_CONFIG = {"storage": {"inmemory": {}, "delete": {"enabled": True}}}


@pytest.fixture
def make_app(monkeypatch):
    """``make_app(config=None, plugins=())`` builds an app from ``config``
    (overrides on the defaults; :data:`BASE_CONFIG` when ``None``) whose
    plugin manager also holds ``plugins``, registered after the built-ins as
    installed plugins would be.  A plugin object may set ``name``.  The
    environment is not read."""

    def make(config=None, plugins=()):
        def build(disabled=()):
            pm = build_plugin_manager(disabled)
            for i, plugin in enumerate(plugins):
                pm.register(plugin, name=getattr(plugin, "name", None) or f"test-plugin-{i}")
            pm.check_pending()
            return pm

        monkeypatch.setattr(app_module, "build_plugin_manager", build)
        return create_app(config=BASE_CONFIG if config is None else config, environ={})

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def state(app):
    """The app's ``RegistryState`` (plugin manager, driver, registry)."""
    return app.extensions["cargohold"]
