"""Minting tokens: signed access tokens (JWTs) and opaque refresh tokens.

Access tokens carry the claims of the token spec (``iss``, ``sub``, ``aud``,
``exp``, ``nbf``, ``iat``, ``jti``, ``access``) and a ``kid`` header holding
the signing key's libtrust fingerprint, so the reference registry verifies
them too.

Refresh tokens are not JWTs, so a registry can never mistake one for an
access token: ``<base64url payload>.<base64url HMAC-SHA256>``, the payload
holding subject, service and expiry.  The HMAC key is derived (HKDF) from the
signing key, so every worker process agrees on it, and replacing the signing
key revokes every refresh token.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cargohold.auth import Access

from .keys import algorithm_for, libtrust_key_id

# Tokens are backdated this much (``nbf``) against clock skew between hosts.
NOT_BEFORE_SKEW = 10


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    token: str
    issued_at: int
    expires_in: int


@dataclasses.dataclass(frozen=True)
class RefreshClaims:
    subject: str
    service: str


class InvalidRefreshToken(Exception):
    """The refresh token is forged, expired or for another service."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Signs access tokens and refresh tokens with one private key.

    :param private_key: a ``cryptography`` private key (RSA >= 2048 bits,
        EC P-256 or Ed25519).
    :param issuer: the ``iss`` claim; the registry's ``auth.token.issuer``.
    :param expiration: access token lifetime in seconds (at least 60, as the
        spec asks).
    :param refresh_expiration: refresh token lifetime in seconds.
    """

    def __init__(self, private_key, issuer: str, expiration: float = 300, refresh_expiration: float = 30 * 86400,
                 clock=time.time):
        self.private_key = private_key
        self.algorithm = algorithm_for(private_key)
        self.kid = libtrust_key_id(private_key.public_key())
        self.issuer = issuer
        self.expiration = max(60, int(expiration))
        self.refresh_expiration = int(refresh_expiration)
        self._clock = clock
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        self._refresh_key = HKDF(hashes.SHA256(), 32, salt=None,
                                 info=b"cargohold refresh token").derive(der)

    def access_token(self, subject: str | None, service: str, access: list[Access]) -> IssuedToken:
        """A signed token for ``subject`` (``None`` = anonymous, ``sub: ""``)
        granting exactly ``access`` on ``service``."""
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": subject or "",
            "aud": service,
            "exp": now + self.expiration,
            "nbf": now - NOT_BEFORE_SKEW,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": [{"type": a.type, "name": a.name, "actions": list(a.actions)} for a in access],
        }
        token = jwt.encode(claims, self.private_key, algorithm=self.algorithm,
                           headers={"kid": self.kid, "typ": "JWT"})
        return IssuedToken(token=token, issued_at=now, expires_in=self.expiration)

    def refresh_token(self, subject: str, service: str) -> str:
        now = int(self._clock())
        payload = json.dumps({"sub": subject, "aud": service, "iat": now, "exp": now + self.refresh_expiration,
                              "jti": secrets.token_urlsafe(16)}, separators=(",", ":")).encode()
        mac = hmac.new(self._refresh_key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def check_refresh_token(self, token: str, service: str) -> RefreshClaims:
        """The subject of a refresh token minted here for ``service``, or
        :class:`InvalidRefreshToken`."""
        payload_b64, sep, mac_b64 = token.partition(".")
        try:
            if not sep or "." in mac_b64:
                raise ValueError
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except ValueError:
            raise InvalidRefreshToken("malformed refresh token") from None
        expected = hmac.new(self._refresh_key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise InvalidRefreshToken("refresh token not issued by this server")
        claims = json.loads(payload)
        if claims.get("exp", 0) < self._clock():
            raise InvalidRefreshToken("refresh token has expired")
        if claims.get("aud") != service:
            raise InvalidRefreshToken("refresh token is for another service")
        return RefreshClaims(subject=claims["sub"], service=claims["aud"])
