"""Access control types shared by the core and auth provider plugins.

The core maps every request to a list of :class:`Access` items and asks the
configured provider's ``authorize(request, access)``.  The provider returns a
:class:`Grant`, or raises :class:`Challenge` (answered 401 with its
``WWW-Authenticate`` header) or :class:`Forbidden` (403).  Anything else,
``None`` included, denies: the core fails closed.
"""

from __future__ import annotations

import abc
import dataclasses
import logging

from cargohold.errors import Denied, RegistryError, Unauthorized

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Access:
    """One resource and the actions wanted on it.  ``type`` is
    ``"repository"`` (``name`` a repository name; actions among ``pull``,
    ``push``, ``delete``) or ``"registry"`` (``name`` ``"catalog"`` or
    ``"metrics"``, action ``"*"``), as in the Docker token scope grammar."""

    type: str
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclasses.dataclass(frozen=True)
class Grant:
    """A successful authorization.  ``user`` is the authenticated name, or
    ``None`` for anonymous access; ``allowed`` optionally narrows what the
    caller may see where the core filters results (e.g. the catalog lists
    only repositories for which ``may_pull(name)`` is true)."""

    user: str | None = None
    allowed: object | None = None

    def may_pull(self, repository: str) -> bool:
        if self.allowed is None:
            return True
        return bool(self.allowed(repository))  # type: ignore[operator]


class Challenge(Unauthorized):
    """Raise from ``authorize`` to answer 401.  ``challenge`` is the value of
    the ``WWW-Authenticate`` header, e.g. ``Basic realm="cargohold"``."""

    def __init__(self, challenge: str, message: str | None = None, detail=None):
        super().__init__(message, detail, headers={"WWW-Authenticate": challenge})
        self.challenge = challenge


class Forbidden(Denied):
    """Raise from ``authorize`` to answer 403 (authenticated, not allowed)."""


class AuthProvider(abc.ABC):
    """What an auth provider factory returns."""

    @abc.abstractmethod
    def authorize(self, request, access: list[Access]) -> Grant:
        """Decide whether ``request`` (a Flask/werkzeug request) may perform
        every item in ``access``.  An empty ``access`` list is the base
        ``GET /v2/`` check: is the caller authenticated at all?  Return a
        :class:`Grant`, or raise :class:`Challenge` or :class:`Forbidden`."""

    def close(self) -> None:
        """Release resources at shutdown, or once a configuration reload
        (SIGHUP) has replaced this provider with a new one."""


def authorize(provider: AuthProvider, request, access: list[Access]) -> Grant:
    """Ask ``provider`` about ``access`` for ``request``, failing closed: a
    :class:`cargohold.errors.RegistryError` (401, 403) passes through, any
    other exception or a result that is not a :class:`Grant` denies."""
    try:
        grant = provider.authorize(request, access)
    except RegistryError:
        raise
    except Exception as e:
        log.exception("auth provider failed; denying")
        raise Denied() from e
    if not isinstance(grant, Grant):
        raise Denied()
    return grant
