"""End-to-end fixtures: one live registry per session, and a real skopeo
(:class:`cargohold.testing.skopeo.Skopeo`) talking to it."""

from __future__ import annotations

import pytest

from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo


@pytest.fixture(scope="session")
def registry():
    """A ``cargohold serve`` process with filesystem storage and deletes enabled."""
    with LiveRegistry() as live:
        yield live


@pytest.fixture(scope="session")
def skopeo(request, tmp_path_factory) -> Skopeo:
    """skopeo, talking to ``registry``; fails (never skips) when it is missing."""
    return Skopeo(find_skopeo(), tmp_path_factory.mktemp("skopeo-home"), request.getfixturevalue("registry"))
