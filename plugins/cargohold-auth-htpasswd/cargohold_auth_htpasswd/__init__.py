"""htpasswd authentication for cargohold.

Configure with::

    auth:
      htpasswd:
        realm: cargohold
        path: /etc/cargohold/htpasswd      # bcrypt entries: htpasswd -B
        access: /etc/cargohold/access.yml  # optional; default: every user may do everything
        cachettl: 60s                      # how long verified credentials skip bcrypt; 0 disables

See :class:`cargohold_auth_htpasswd.provider.HtpasswdProvider` for the
answers given, :mod:`cargohold_auth_htpasswd.htpasswd` for the file and the credential
cache, and :mod:`cargohold.access_control` for the rules file.
"""

from __future__ import annotations

from cargohold import hookimpl
from cargohold.access_control import access_rules
from cargohold.config import Duration
from cargohold_auth_htpasswd.htpasswd import HtpasswdFile
from cargohold_auth_htpasswd.provider import HtpasswdProvider

__all__ = ["HtpasswdProvider", "create_provider"]

_SECTION = "auth.htpasswd"
DEFAULT_REALM = "cargohold"
DEFAULT_CACHE_TTL = 60.0


def create_provider(params: dict) -> HtpasswdProvider:
    """Build the provider from the ``auth.htpasswd`` section.  Raises
    ``ValueError`` naming the key (and file line) at fault."""
    unknown = sorted(set(params) - {"realm", "path", "access", "cachettl"})
    if unknown:
        raise ValueError(f"{_SECTION}.{unknown[0]}: unknown setting")
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{_SECTION}.path: required, the htpasswd file (bcrypt entries, 'htpasswd -B')")
    ttl = params.get("cachettl")
    ttl = DEFAULT_CACHE_TTL if ttl is None or ttl == "" else Duration.coerce(ttl)
    try:
        htpasswd = HtpasswdFile(path, cache_ttl=ttl)
    except ValueError as e:
        raise ValueError(f"{_SECTION}.path: {e}") from None
    rules_path = params.get("access")
    try:
        rules = access_rules(rules_path)
    except ValueError as e:
        raise ValueError(f"{_SECTION}.access: {e}") from None
    return HtpasswdProvider(htpasswd, rules, params.get("realm") or DEFAULT_REALM)


@hookimpl
def cargohold_auth_providers():
    return {"htpasswd": create_provider}


@hookimpl
def cargohold_config_schema():
    return {_SECTION: {"realm": str, "path": str, "access": str, "cachettl": Duration}}
