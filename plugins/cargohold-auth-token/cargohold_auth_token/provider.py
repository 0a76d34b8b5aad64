"""The ``token`` auth provider: bearer tokens from a token server.

Without a token, or with one that does not verify, the registry answers 401
with ``WWW-Authenticate: Bearer realm="<realm>",service="<service>",
scope="<what the request needs>"`` (plus ``error="invalid_token"`` for a bad
token), which sends docker, containerd and skopeo to the token server.  A
valid token that lacks an action the request needs gets the same challenge
with ``error="insufficient_scope"``: 401 rather than 403, as the reference
registry answers, so that clients fetch a token for the wider scope.
"""

from __future__ import annotations

from typing import Callable

from cargohold.auth import Access, AuthProvider, Challenge, Grant
from cargohold.request_context import external_url

from .keys import ALGORITHMS, load_cert_bundle, load_jwks
from .scopes import format_scopes
from .verifier import DEFAULT_LEEWAY, InvalidToken, TokenVerifier

#: Where the built-in token server answers, and the realm ``autoredirect`` builds.
DEFAULT_TOKEN_PATH = "/auth/token"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TokenAuth(AuthProvider):
    """Authorizes requests carrying ``Authorization: Bearer <JWT>``.

    ``pull_policy(subject, repository) -> bool``, when set (the built-in token
    server sets it to its access rules), widens what the catalog lists beyond
    the repositories the token itself names for ``pull``.
    """

    def __init__(self, verifier: TokenVerifier, realm: str, service: str,
                 autoredirect: bool = False, autoredirectpath: str = DEFAULT_TOKEN_PATH):
        self.verifier = verifier
        self.realm = realm
        self.service = service
        self.autoredirect = autoredirect
        self.autoredirectpath = autoredirectpath
        self.pull_policy: Callable[[str, str], bool] | None = None

    @classmethod
    def from_config(cls, params: dict) -> "TokenAuth":
        """Build from the ``auth.token`` section; ``ValueError`` naming the key."""
        for key in ("service", "issuer"):
            if not params.get(key):
                raise ValueError(f"'{key}' is required")
        if not params.get("realm") and not params.get("autoredirect"):
            raise ValueError("'realm' is required (the token server's URL), unless 'autoredirect' is true")
        if not params.get("rootcertbundle") and not params.get("jwks"):
            raise ValueError("'rootcertbundle' or 'jwks' is required: the keys tokens are signed with")
        keys = {}
        if params.get("rootcertbundle"):
            keys.update(load_cert_bundle(params["rootcertbundle"]))
        if params.get("jwks"):
            keys.update(load_jwks(params["jwks"]))
        algorithms = tuple(params.get("signingalgorithms") or ALGORITHMS)
        try:
            verifier = TokenVerifier(keys, issuer=params["issuer"], service=params["service"],
                                     leeway=DEFAULT_LEEWAY if params.get("leeway") is None else params["leeway"],
                                     algorithms=algorithms)
        except ValueError as e:
            raise ValueError(f"signingalgorithms: {e}") from None
        path = params.get("autoredirectpath") or DEFAULT_TOKEN_PATH
        if not path.startswith("/"):
            raise ValueError(f"autoredirectpath: must start with '/', got {path!r}")
        return cls(verifier, realm=params.get("realm", ""), service=params["service"],
                   autoredirect=bool(params.get("autoredirect")), autoredirectpath=path)

    def authorize(self, request, access: list[Access]) -> Grant:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise self._challenge(request, access, None, "authentication required")
        try:
            claims = self.verifier.verify(raw)
        except InvalidToken as e:
            raise self._challenge(request, access, "invalid_token", f"invalid token: {e}")
        missing = [a for a in access if not claims.access.covers(a)]
        if missing:
            raise self._challenge(request, access, "insufficient_scope",
                                  "the token does not grant the requested access",
                                  detail=[{"Type": a.type, "Name": a.name, "Action": action}
                                          for a in missing for action in a.actions])
        return Grant(user=claims.subject or None, allowed=self._catalog_filter(claims))

    def _catalog_filter(self, claims) -> Callable[[str], bool]:
        policy, subject = self.pull_policy, claims.subject or None

        def may_pull(repository: str) -> bool:
            return claims.access.may_pull(repository) or bool(policy and policy(subject, repository))

        return may_pull

    def challenge_value(self, request, access: list[Access], error: str | None) -> str:
        """The ``WWW-Authenticate`` value for ``access``."""
        params = [f"realm={_quote(self._realm(request))}", f"service={_quote(self.service)}"]
        scope = format_scopes(access)
        if scope:
            params.append(f"scope={_quote(scope)}")
        if error:
            params.append(f"error={_quote(error)}")
        return "Bearer " + ",".join(params)

    def _challenge(self, request, access, error, message, detail=None) -> Challenge:
        return Challenge(self.challenge_value(request, access, error), message=message, detail=detail)

    def _realm(self, request) -> str:
        if not self.autoredirect:
            return self.realm
        # The token server of this very registry, as the client reached it:
        # http.host if set, else the request's own scheme and host, which are
        # a proxy's X-Forwarded-* only when http.trustedproxies trusts it.
        return external_url(self.autoredirectpath)
