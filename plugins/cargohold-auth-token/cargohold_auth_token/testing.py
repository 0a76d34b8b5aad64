"""Helpers for tests that need token auth: signing keys on disk, tokens with
any claims and headers, credentials headers, and the configuration of a
registry using the token provider and the built-in token server.

Used by this plugin's tests and by the core's all-routes auth test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .keygen import write_key_files
from .keys import algorithm_for, key_ids

ISSUER = "test-issuer"
SERVICE = "test-registry"
REALM = "https://auth.example.test/token"


class Signer:
    """A private key written by :func:`~.keygen.write_key_files` into
    ``directory`` (``paths["key"]``, ``["crt"]``, ``["jwks"]``) that mints
    tokens with any claims and header."""

    def __init__(self, directory: Path, kind: str = "ec", name: str | None = None):
        self.paths = write_key_files(Path(directory), kind, name=name or kind)
        self.private_key = serialization.load_pem_private_key(self.paths["key"].read_bytes(), password=None)
        self.public_key = self.private_key.public_key()
        self.algorithm = algorithm_for(self.private_key)
        self.kid, self.thumbprint = key_ids(self.public_key)

    def claims(self, access=(), **overrides) -> dict:
        """Valid claims for ``access`` (``(type, name, actions)`` triples);
        ``overrides`` replace claims, ``None`` removes one."""
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
                  "jti": "test", "access": [{"type": t, "name": n, "actions": list(a)} for t, n, a in access]}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, access=(), headers=None, **claims) -> str:
        """A signed token; ``headers`` are added to (or replace) ``kid``."""
        return self.sign(self.claims(access, **claims), headers)

    def sign(self, claims: dict, headers=None) -> str:
        """``claims`` signed as they are."""
        header = {"kid": self.kid, **(headers or {})}
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=header)


def basic(user: str, password: str) -> dict:
    """An ``Authorization: Basic`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    """An ``Authorization: Bearer`` header."""
    return {"Authorization": f"Bearer {token}"}


def unverified_claims(token: str) -> dict:
    """A JWT's claims, not verified (to inspect what a token server issued)."""
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def token_auth_config(rootcertbundle, **auth) -> dict:
    """An ``auth`` section for the token provider trusting ``rootcertbundle``."""
    return {"token": {"realm": REALM, "service": SERVICE, "issuer": ISSUER,
                      "rootcertbundle": str(rootcertbundle), **auth}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict, claims: dict, signature: bytes = b"") -> str:
    """A JWS in compact form with any header and signature bytes."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def hs256_token(header: dict, claims: dict, secret: bytes) -> str:
    """A token MACed with HS256 under ``secret`` (PyJWT refuses to make one
    with a public key as the secret, which is the attack to test)."""
    signing_input = compact(header, claims).rsplit(".", 1)[0]
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def _tampered(token: str, access: list[dict]) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"] = access
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def bad_tokens(signer: Signer, stranger: Signer, access=()) -> dict[str, str]:
    """Tokens a registry trusting ``signer`` (issuer :data:`ISSUER`, service
    :data:`SERVICE`) must refuse, each granting ``access`` but for one defect:
    expired, not yet valid, wrong audience or issuer, no ``exp``/``aud``,
    signed by ``stranger`` under ``signer``'s kid, claims changed after
    signing, an unknown or missing kid, ``alg: none``, HS256 keyed with the
    public key, an unaccepted algorithm, malformed tokens and ``access``
    claims."""
    now = int(time.time())
    claims = signer.claims(access)
    public_pem = signer.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return {
        "expired": signer.token(access, exp=now - 120),
        "not-yet-valid": signer.token(access, nbf=now + 120),
        "wrong-audience": signer.token(access, aud="other-registry"),
        "wrong-issuer": signer.token(access, iss="evil-issuer"),
        "no-expiry": signer.token(access, exp=None),
        "no-audience": signer.token(access, aud=None),
        "wrong-signature": stranger.token(access, headers={"kid": signer.kid}),
        "tampered-claims": _tampered(signer.token(()), claims["access"]),
        "unknown-kid": stranger.token(access),
        "no-kid": compact({"alg": signer.algorithm, "typ": "JWT"}, claims, b"x" * 64),
        "alg-none": compact({"alg": "none", "kid": signer.kid}, claims),
        "alg-none-capitalised": compact({"alg": "None", "kid": signer.kid}, claims),
        "hs256-with-public-key": hs256_token({"alg": "HS256", "kid": signer.kid}, claims, public_pem),
        "rs512-unsupported": compact({"alg": "RS512", "kid": signer.kid}, claims, b"x" * 64),
        "malformed": "not.a.jwt",
        "two-segments": "abc.def",
        "bad-access-claim": signer.sign({**claims, "access": "repository:team/app:pull"}),
        "bad-access-entry": signer.sign({**claims, "access": [{"type": "repository"}]}),
    }
