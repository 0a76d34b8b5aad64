"""Signing keys: which algorithm each key type signs with, the key IDs
(``kid``) a key is known by, and loading the trusted public keys from a PEM
certificate bundle or a JWKS file.

A key is accepted under two IDs:

* its libtrust fingerprint (the form the token spec describes, and the one
  the reference registry's tools put in ``kid``): SHA-256 of the DER
  ``SubjectPublicKeyInfo``, truncated to 240 bits, base32, in 12 groups of 4
  joined by ``:``;
* its RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JWK), the
  form the reference registry 3.x matches certificate keys by.

A key from a JWKS file is also accepted under the ``kid`` the file gives it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

#: The only algorithms tokens may be signed with: no ``none``, no HMAC.
ALGORITHMS = ("RS256", "ES256", "EdDSA")

MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


def algorithm_for(key) -> str:
    """The JWS algorithm a (public or private) key signs with; ``ValueError``
    for a key type or size the registry does not accept."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits, this one has {key.key_size}")
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"EC keys must be on P-256 (ES256), this one is on {key.curve.name}")
        return "ES256"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey,
                        ed448.Ed448PublicKey, ed448.Ed448PrivateKey)):
        return "EdDSA"
    raise ValueError(f"unsupported key type {type(key).__name__} (use RSA, EC P-256 or Ed25519)")


def libtrust_key_id(key) -> str:
    """The libtrust fingerprint of a public key (see the module docstring)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i:i + 4] for i in range(0, 48, 4))


_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def public_jwk(key) -> dict:
    """The public JWK of a key, as a dict."""
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        jwk = RSAAlgorithm.to_jwk(_public(key), as_dict=True)
    elif isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        jwk = ECAlgorithm.to_jwk(_public(key), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(_public(key), as_dict=True)
    return dict(jwk)


def thumbprint_key_id(key) -> str:
    """The RFC 7638 JWK thumbprint of a key (base64url, no padding)."""
    jwk = public_jwk(key)
    canonical = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _public(key):
    return key.public_key() if hasattr(key, "public_key") else key


@dataclasses.dataclass(frozen=True)
class TrustedKey:
    """A public key tokens may be signed with, the algorithm it verifies and
    where it came from (for messages)."""

    key: PublicKey
    algorithm: str
    origin: str


def key_ids(key) -> tuple[str, str]:
    """Both IDs a key is accepted under: libtrust fingerprint, thumbprint."""
    return libtrust_key_id(key), thumbprint_key_id(key)


def load_cert_bundle(path: str) -> dict[str, TrustedKey]:
    """``{kid: TrustedKey}`` for each certificate in a PEM bundle.  Raises
    ``ValueError`` naming the file for an unreadable file, a bundle without
    certificates or a key of an unsupported type."""
    data = _read(path, "rootcertbundle")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"rootcertbundle: {path}: no PEM certificates could be read ({e})") from None
    keys: dict[str, TrustedKey] = {}
    for i, cert in enumerate(certs):
        origin = f"{path} (certificate {i + 1}, {cert.subject.rfc4514_string() or 'no subject'})"
        key = cert.public_key()
        try:
            trusted = TrustedKey(key, algorithm_for(key), origin)
        except ValueError as e:
            raise ValueError(f"rootcertbundle: {origin}: {e}") from None
        for kid in key_ids(key):
            keys[kid] = trusted
    return keys


def load_jwks(path: str) -> dict[str, TrustedKey]:
    """``{kid: TrustedKey}`` for each key of a JWKS file (``{"keys": [...]}``),
    under its ``kid`` and its two derived IDs.  Private members are ignored;
    only the public half is kept."""
    from jwt import PyJWK
    from jwt.exceptions import PyJWTError

    raw = _read(path, "jwks")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"jwks: {path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError(f"jwks: {path}: expected a JWK set, {{\"keys\": [...]}}, with at least one key")
    keys: dict[str, TrustedKey] = {}
    for i, jwk in enumerate(data["keys"]):
        origin = f"{path} (key {i + 1}{', kid ' + repr(jwk.get('kid')) if isinstance(jwk, dict) and jwk.get('kid') else ''})"
        if not isinstance(jwk, dict):
            raise ValueError(f"jwks: {origin}: expected a JWK object")
        try:
            key = _public(PyJWK(jwk).key)
            trusted = TrustedKey(key, algorithm_for(key), origin)
        except (PyJWTError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"jwks: {origin}: {e}") from None
        if jwk.get("alg") and jwk["alg"] != trusted.algorithm:
            raise ValueError(f"jwks: {origin}: 'alg' is {jwk['alg']!r}, but the key signs {trusted.algorithm}")
        for kid in (*key_ids(key), jwk.get("kid")):
            if kid:
                keys[str(kid)] = trusted
    return keys


def load_private_key(path: str):
    """A PEM private key (PKCS#8 or traditional, unencrypted) for signing.
    Raises ``ValueError`` naming the file."""
    data = _read(path, "signingkey")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"signingkey: {path}: not an unencrypted PEM private key ({e})") from None
    try:
        algorithm_for(key)
    except ValueError as e:
        raise ValueError(f"signingkey: {path}: {e}") from None
    return key


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{key}: cannot read {path}: {e.strerror or e}") from None
