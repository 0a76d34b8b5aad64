"""Verifying bearer tokens (the JWTs of the Docker token spec).

A token is accepted only if all of these hold:

* it is a compact JWS whose header names one of :data:`~.keys.ALGORITHMS`
  (``none`` and HMAC are refused before any key is looked at) and a ``kid``
  of a trusted key, and that key's algorithm is the header's;
* the signature verifies with that key;
* ``iss`` is the configured issuer and ``aud`` (a string or a list) holds
  the configured service;
* ``exp`` is present and not past, and ``nbf`` (if present) is reached,
  both with :attr:`TokenVerifier.leeway` for clock skew;
* the ``access`` claim, if present, is a list of ``{type, name, actions}``.

Clients send the same token with every request of a push or pull, so a
verified token is remembered (keyed by its SHA-256, up to
:data:`CACHE_SIZE` tokens): a repeat costs a hash and the time checks
instead of a signature verification.  Failures are never remembered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time

import jwt

from cargohold.auth import Access
from cargohold.lru import LRU

from .keys import ALGORITHMS, TrustedKey
from .scopes import AccessSet

DEFAULT_LEEWAY = 60.0
CACHE_SIZE = 4096


class InvalidToken(Exception):
    """The token is not acceptable; ``str()`` says why, without secrets."""


@dataclasses.dataclass(frozen=True)
class Claims:
    """A verified token: its subject (``""`` for anonymous) and what it allows."""

    subject: str
    access: AccessSet
    raw: dict


class TokenVerifier:
    """Verifies tokens against trusted keys, one issuer and one service;
    ``clock()`` (default ``time.time``) gives the time ``exp`` and ``nbf``
    are checked against."""

    def __init__(self, keys: dict[str, TrustedKey], issuer: str, service: str,
                 leeway: float = DEFAULT_LEEWAY, algorithms: tuple[str, ...] = ALGORITHMS,
                 cache_size: int = CACHE_SIZE, clock=time.time):
        if not keys:
            raise ValueError("no trusted signing keys")
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported signing algorithm(s) {', '.join(unknown)}; "
                             f"supported: {', '.join(ALGORITHMS)}")
        self.keys = keys
        self.issuer = issuer
        self.service = service
        self.leeway = leeway
        self.algorithms = tuple(algorithms)
        self._cache = LRU(cache_size)
        self.clock = clock

    def verify(self, raw: str) -> Claims:
        """The token's claims, or :class:`InvalidToken`."""
        key = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()
        claims = self._cache.get(key)
        if claims is None:
            claims = self._verify(raw)
        try:
            self._check_time(claims.raw)
        except InvalidToken:
            self._cache.pop(key)
            raise
        self._cache.put(key, claims)
        return claims

    def _check_time(self, claims: dict) -> None:
        now = self.clock()
        if now > claims["exp"] + self.leeway:
            raise InvalidToken("token has expired")
        if "nbf" in claims and now < claims["nbf"] - self.leeway:
            raise InvalidToken("token is not valid yet (nbf)")

    def _verify(self, raw: str) -> Claims:
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken(f"signing algorithm {str(alg)[:20]!r} is not accepted "
                               f"(accepted: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        trusted = self.keys.get(kid) if isinstance(kid, str) else None
        if trusted is None:
            raise InvalidToken("token signed by an unknown key" if kid else "token has no 'kid' header")
        if trusted.algorithm != alg:
            raise InvalidToken(f"key {kid[:60]!r} signs {trusted.algorithm}, not {alg}")
        try:
            claims = jwt.decode(
                raw, key=trusted.key, algorithms=[alg], issuer=self.issuer, audience=self.service,
                options={"require": ["exp", "iss", "aud"], "verify_iat": False,
                         "verify_exp": False, "verify_nbf": False},  # checked by _check_time, on our clock
            )
        except jwt.InvalidSignatureError:
            raise InvalidToken("invalid signature") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token is from an untrusted issuer") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is for another service (aud)") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"token lacks the {e.claim!r} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise InvalidToken("malformed 'sub' claim")
        for name in ("exp", "nbf"):
            value = claims.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidToken(f"malformed {name!r} claim")
        return Claims(subject=subject, access=AccessSet(parse_access_claim(claims.get("access"))), raw=claims)


def parse_access_claim(value) -> list[Access]:
    """The ``access`` claim as :class:`Access` items (``InvalidToken`` if it
    is not a list of ``{type, name, actions}``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidToken("malformed 'access' claim")
    items = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidToken("malformed 'access' claim")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not (isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list)
                and all(isinstance(a, str) for a in actions)):
            raise InvalidToken("malformed 'access' claim")
        items.append(Access(kind, name, tuple(actions)))
    return items
