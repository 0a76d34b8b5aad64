"""The ``/v2/`` HTTP API.  Importing the submodules attaches their routes to
the one :data:`v2` blueprint."""

from cargohold.api import blobs, listing, manifests  # noqa: F401  (route registration)
from cargohold.api.base import v2

__all__ = ["v2"]
