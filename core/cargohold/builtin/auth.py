"""The ``none`` auth provider: every request is allowed (the default when the
config has no ``auth`` section, as with the reference registry)."""

from __future__ import annotations

from cargohold import hookimpl
from cargohold.auth import AuthProvider, Grant


class AllowAll(AuthProvider):
    """Anonymous access to everything."""

    def authorize(self, request, access):
        return Grant(user=None)


@hookimpl
def cargohold_auth_providers():
    return {"none": lambda params: AllowAll()}
