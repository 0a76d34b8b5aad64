"""Docker registry token authentication for cargohold.

* The ``token`` auth provider (``auth.token``): requests carry bearer JWTs
  signed by a token server the registry trusts (RS256, ES256 or EdDSA keys
  from a PEM certificate bundle or a JWKS file); see :mod:`.provider`.
* A built-in token server (the ``tokenserver`` section): the realm endpoint,
  issuing tokens to htpasswd users according to an access rules file; see
  :mod:`.tokenserver`.
* ``python -m cargohold_auth_token.keygen DIR`` writes a signing key with
  its certificate and JWKS.
"""

from __future__ import annotations

from cargohold import hookimpl
from cargohold.access_control import access_rules
from cargohold.config import Duration
from cargohold_auth_htpasswd.htpasswd import HtpasswdFile

from .issuer import TokenIssuer
from .keys import load_private_key
from .provider import DEFAULT_TOKEN_PATH, TokenAuth
from .tokenserver import EXTENSION, TokenServer, make_blueprint

AUTH_SCHEMA = {
    "realm": str,
    "service": str,
    "issuer": str,
    "rootcertbundle": str,
    "jwks": str,
    "autoredirect": bool,
    "autoredirectpath": str,
    "signingalgorithms": list,
    "leeway": Duration,
}

TOKENSERVER_SCHEMA = {
    "path": str,
    "service": str,
    "issuer": str,
    "signingkey": str,
    "htpasswd": str,
    "rules": str,
    "expiration": Duration,
    "refreshexpiration": Duration,
}

DEFAULT_EXPIRATION = 300.0
DEFAULT_REFRESH_EXPIRATION = 30 * 86400.0


@hookimpl
def cargohold_config_schema():
    """``auth.token`` (the provider) and ``tokenserver`` (the token server)."""
    return {"auth.token": AUTH_SCHEMA, "tokenserver": TOKENSERVER_SCHEMA}


@hookimpl
def cargohold_auth_providers():
    """The ``token`` provider, built from ``auth.token``."""
    return {"token": TokenAuth.from_config}


def _token_server_section(config: dict) -> dict | None:
    section = config.get("tokenserver")
    return section if isinstance(section, dict) and section else None


def token_path(section: dict) -> str:
    """``tokenserver.path``, checked (``ValueError`` naming the key)."""
    path = section.get("path") or DEFAULT_TOKEN_PATH
    if not path.startswith("/") or path.rstrip("/") == "/v2" or path.startswith("/v2/"):
        raise ValueError(f"tokenserver.path: must start with '/' and lie outside /v2/, got {path!r}")
    return path


@hookimpl
def cargohold_blueprints(app):
    """The token endpoint at ``tokenserver.path``, when ``tokenserver`` is set."""
    section = _token_server_section(app.config["CARGOHOLD"])
    if section is None:
        return None
    try:
        path = token_path(section)
    except ValueError:
        return None  # cargohold_startup reports it and fails start-up
    return [make_blueprint(path)]


@hookimpl
def cargohold_startup(app):
    """Build the token server (when configured) and check that the registry
    trusts what it signs."""
    config = app.config["CARGOHOLD"]
    section = _token_server_section(config)
    if section is None:
        return
    server = build_token_server(section, (config.get("auth") or {}).get("token") or {})
    provider = app.extensions["cargohold"].auth
    if isinstance(provider, TokenAuth):
        check_trust(server, provider)
        if provider.autoredirect and provider.autoredirectpath != token_path(section):
            raise ValueError(f"auth.token.autoredirectpath {provider.autoredirectpath!r} differs from "
                             f"tokenserver.path {token_path(section)!r}: clients would look for tokens elsewhere")
        provider.pull_policy = server.rules.may_pull
    app.extensions[EXTENSION] = server


def build_token_server(section: dict, auth: dict) -> TokenServer:
    """A :class:`~.tokenserver.TokenServer` from the ``tokenserver`` section;
    ``service`` and ``issuer`` default to ``auth.token``'s.  ``ValueError``
    naming the key."""
    service = section.get("service") or auth.get("service")
    issuer = section.get("issuer") or auth.get("issuer")
    for key, value in (("service", service), ("issuer", issuer), ("signingkey", section.get("signingkey"))):
        if not value:
            raise ValueError(f"tokenserver.{key}: required" + (
                "" if key == "signingkey" else f" (or auth.token.{key})"))
    token_path(section)
    try:
        key = load_private_key(section["signingkey"])
    except ValueError as e:
        raise ValueError(f"tokenserver.{e}") from None
    try:
        rules = access_rules(section.get("rules"))
    except ValueError as e:
        raise ValueError(f"tokenserver.rules: {e}") from None
    try:
        htpasswd = HtpasswdFile(section["htpasswd"]) if section.get("htpasswd") else None
    except ValueError as e:
        raise ValueError(f"tokenserver.htpasswd: {e}") from None
    expiration = section.get("expiration") or DEFAULT_EXPIRATION
    if expiration < 60:
        raise ValueError("tokenserver.expiration: at least 60s (clients assume tokens live that long)")
    issuer_ = TokenIssuer(key, issuer, expiration=expiration,
                          refresh_expiration=section.get("refreshexpiration") or DEFAULT_REFRESH_EXPIRATION)
    return TokenServer(issuer_, service, rules, htpasswd)


def check_trust(server: TokenServer, provider: TokenAuth) -> None:
    """The registry must accept what its own token server signs."""
    verifier = provider.verifier
    if server.issuer.kid not in verifier.keys:
        raise ValueError("tokenserver.signingkey: its public key is not in auth.token.rootcertbundle or "
                         "auth.token.jwks, so the registry would reject every token it issues")
    if server.issuer.issuer != verifier.issuer:
        raise ValueError(f"tokenserver.issuer {server.issuer.issuer!r} differs from auth.token.issuer "
                         f"{verifier.issuer!r}")
    if server.service != verifier.service:
        raise ValueError(f"tokenserver.service {server.service!r} differs from auth.token.service "
                         f"{verifier.service!r}")
    if server.issuer.algorithm not in verifier.algorithms:
        raise ValueError(f"tokenserver.signingkey signs {server.issuer.algorithm}, which "
                         "auth.token.signingalgorithms does not accept")
