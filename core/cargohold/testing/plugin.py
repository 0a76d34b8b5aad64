"""cargohold's pytest plugin: fixtures for testing cargohold plugins.

Installed with ``pip install 'cargohold[testing]'``; pytest loads it through
the ``pytest11`` entry point ``cargohold``, so a plugin's tests use the
fixtures without importing anything.  Every fixture name starts with
``cargohold_``.

Configuration (override these in a ``conftest.py`` or a test module):

``cargohold_config``
    The configuration the registries below are built with (overrides on
    cargohold's defaults, as in the YAML file).  Default: in-memory storage
    with deletes enabled.
``cargohold_plugins``
    Plugin objects (modules, or instances with ``@hookimpl`` methods) added
    to the in-process app's plugin manager, beside the installed ones.
    Default: none.

In process (fast, no sockets):

``cargohold_make_app(config=None, plugins=None)``
    Builds a Flask app (``cargohold.app.create_app``) from ``config`` (default
    ``cargohold_config``) with ``plugins`` (default ``cargohold_plugins``);
    the environment is not read; ``app.test_client()`` reads each response
    whole and closes it, as a server does.  Apps are shut down after the
    test.
``cargohold_app``
    ``cargohold_make_app()``.
``cargohold_client``
    A Flask test client of ``cargohold_app`` that reads each response whole
    and closes it, as a server does (so ``cargohold_request_finished`` runs).
``cargohold_registry_client``
    A :class:`cargohold.testing.client.RegistryClient` on ``cargohold_app``:
    ``push_image``, ``push_blob``, ``put_manifest``, ``pull_image``,
    ``get_blob``, ``request``.

A live server (a real ``cargohold serve`` process on a free 127.0.0.1 port):

``cargohold_serve(config=None, plugins=None, env=None)``
    Starts one and returns its :class:`cargohold.testing.server.LiveRegistry`
    (``url``, ``client()``, ``log()``...); stopped after the test.  ``config``
    defaults to ``cargohold_config``; ``plugins`` maps entry-point names to
    modules (or module source) installed for that process only, since
    plugin objects cannot cross a process boundary (installed plugins load
    anyway); ``env`` adds ``CARGOHOLD_*`` variables.
``cargohold_live``
    ``cargohold_serve()``.

Storage drivers run the shared contract suite by subclassing
:class:`cargohold.testing.storage.StorageDriverSuite` (re-exported here)
with a ``driver`` fixture.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Iterable

import pytest
import yaml
from flask.testing import FlaskClient

from cargohold.config import STORAGE_RESERVED
from cargohold.testing.client import RegistryClient
from cargohold.testing.server import LiveRegistry
from cargohold.testing.storage import StorageDriverSuite

__all__ = ["BASE_CONFIG", "StorageDriverSuite", "BufferedClient", "live_registry"]

#: The default ``cargohold_config``: in-memory storage, deletes enabled.
BASE_CONFIG: dict = {"storage": {"inmemory": {}, "delete": {"enabled": True}}}


class BufferedClient(FlaskClient):
    """Reads each response whole and closes it, as a server does: requests
    are measured and reported when their response is closed."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def live_registry(config: dict | None = None, plugins: dict | None = None, env: dict | None = None,
                  directory: str | None = None) -> LiveRegistry:
    """A :class:`LiveRegistry` (not started) for ``config`` (written as a
    YAML file in ``directory``), ``plugins`` and ``env``.  A storage driver
    named in ``config`` is the one used; without one, a temporary
    filesystem root."""
    env = dict(env or {})
    kwargs: dict[str, Any] = {}
    if config:
        directory = directory or tempfile.mkdtemp(prefix="cargohold-config-")
        path = os.path.join(directory, "config.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        kwargs["config_file"] = path
        storage = config.get("storage")
        storage = {storage: {}} if isinstance(storage, str) else storage if isinstance(storage, dict) else {}
        named = [k for k in storage if k not in STORAGE_RESERVED]
        if named:
            env.setdefault("CARGOHOLD_STORAGE", named[0])
            root = (storage[named[0]] or {}).get("rootdirectory")
            if root:
                kwargs["root"] = root
    return LiveRegistry(env=env, plugins=plugins, **kwargs)


@pytest.fixture
def cargohold_config() -> dict:
    """The configuration the ``cargohold_*`` registries are built with."""
    return copy.deepcopy(BASE_CONFIG)


@pytest.fixture
def cargohold_plugins() -> list:
    """Plugin objects added to in-process apps (beside installed plugins)."""
    return []


@pytest.fixture
def cargohold_make_app(cargohold_config, cargohold_plugins):
    """``make(config=None, plugins=None)``: a new app; shut down after the test."""
    from cargohold.app import create_app

    apps = []

    def make(config: dict | None = None, plugins: Iterable[Any] | None = None):
        app = create_app(config=cargohold_config if config is None else config, environ={},
                         plugins=cargohold_plugins if plugins is None else plugins)
        app.test_client_class = BufferedClient  # app.test_client() reads and closes, as a server does
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.cargohold_shutdown()


@pytest.fixture
def cargohold_app(cargohold_make_app):
    """An app of ``cargohold_config`` with ``cargohold_plugins``."""
    return cargohold_make_app()


@pytest.fixture
def cargohold_client(cargohold_app):
    """A Flask test client of ``cargohold_app`` (responses read whole and closed)."""
    return BufferedClient(cargohold_app, cargohold_app.response_class, use_cookies=False)


@pytest.fixture
def cargohold_registry_client(cargohold_app) -> RegistryClient:
    """A client that pushes and pulls images to ``cargohold_app``."""
    return RegistryClient.for_app(cargohold_app)


@pytest.fixture
def cargohold_serve(cargohold_config, tmp_path_factory):
    """``serve(config=None, plugins=None, env=None)``: a started
    :class:`LiveRegistry`; stopped after the test."""
    started: list[LiveRegistry] = []

    def serve(config: dict | None = None, plugins: dict | None = None, env: dict | None = None) -> LiveRegistry:
        live = live_registry(cargohold_config if config is None else config, plugins, env,
                             str(tmp_path_factory.mktemp("cargohold-live")))
        started.append(live)
        return live.start()

    yield serve
    for live in started:
        live.stop()
        live.cleanup()


@pytest.fixture
def cargohold_live(cargohold_serve) -> LiveRegistry:
    """A live ``cargohold serve`` of ``cargohold_config``."""
    return cargohold_serve()
