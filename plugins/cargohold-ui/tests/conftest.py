"""What the catalog's tests share: the users and access rules of their
registries."""

from __future__ import annotations

import pytest

from cargohold.testing.auth import write_htpasswd

#: Anonymous callers may pull public/**, bob team/**, alice everything; only
#: signed-in users may list the catalog.
RULES = """
rules:
  - {repositories: ["public/**"], users: [anonymous], actions: [pull]}
  - {repositories: ["**"], users: [alice], actions: ["*"]}
  - {repositories: ["team/**"], users: [bob], actions: [pull]}
  - {registry: catalog, users: ["*"]}
"""


def write_auth(directory) -> dict:
    """An ``auth.htpasswd`` section for alice and bob with :data:`RULES`,
    its files written into ``directory``."""
    (directory / "access.yml").write_text(RULES)
    htpasswd = write_htpasswd(directory / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    return {"htpasswd": {"realm": "cargohold", "path": htpasswd, "access": str(directory / "access.yml")}}


@pytest.fixture(scope="session")
def auth_section():
    """:func:`write_auth`, as a fixture."""
    return write_auth
