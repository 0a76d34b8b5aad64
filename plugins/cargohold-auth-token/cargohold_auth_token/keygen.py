"""Write a token signing key and what the registry needs to trust it.

``python -m cargohold_auth_token.keygen DIR [--type ec|rsa|ed25519] [--name token]``
writes ``DIR/<name>.key`` (the private key, PKCS#8 PEM, mode 0600) for
``tokenserver.signingkey``, ``DIR/<name>.crt`` (a self-signed certificate)
for ``auth.token.rootcertbundle`` and ``DIR/<name>.jwks`` (the public key as
a JWK set) for ``auth.token.jwks``, then prints the key's IDs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from .keys import algorithm_for, key_ids, public_jwk

KEY_TYPES = ("ec", "rsa", "ed25519")


def generate_key(kind: str = "ec"):
    """A new private key: ``ec`` (P-256, ES256), ``rsa`` (3072 bits, RS256)
    or ``ed25519`` (EdDSA)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {kind!r} (expected one of {', '.join(KEY_TYPES)})")


def self_signed_certificate(key, common_name: str = "cargohold token signer", days: int = 3650) -> x509.Certificate:
    """A self-signed certificate for ``key``'s public half."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def jwks_for(key) -> dict:
    """The JWK set holding ``key``'s public half, with ``kid``, ``alg`` and ``use``."""
    jwk = public_jwk(key)
    jwk.update(kid=key_ids(key.public_key())[0], alg=algorithm_for(key), use="sig")
    return {"keys": [jwk]}


def write_key_files(directory: Path, kind: str = "ec", name: str = "token") -> dict[str, Path]:
    """Generate a key and write ``<name>.key``, ``.crt`` and ``.jwks`` into
    ``directory``; returns their paths by suffix."""
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key(kind)
    paths = {suffix: directory / f"{name}.{suffix}" for suffix in ("key", "crt", "jwks")}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    paths["crt"].write_bytes(self_signed_certificate(key).public_bytes(serialization.Encoding.PEM))
    paths["jwks"].write_text(json.dumps(jwks_for(key), indent=2) + "\n")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cargohold_auth_token.keygen",
                                     description="Write a token signing key, its certificate and its JWKS.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--type", choices=KEY_TYPES, default="ec", help="key type (default: ec, i.e. ES256)")
    parser.add_argument("--name", default="token", help="file name stem (default: token)")
    args = parser.parse_args(argv)
    paths = write_key_files(args.directory, args.type, args.name)
    key = serialization.load_pem_private_key(paths["key"].read_bytes(), password=None)
    libtrust, thumbprint = key_ids(key.public_key())
    for suffix, what in (("key", "tokenserver.signingkey"), ("crt", "auth.token.rootcertbundle"),
                         ("jwks", "auth.token.jwks")):
        print(f"{paths[suffix]}  ({what})")
    print(f"algorithm {algorithm_for(key)}, kid {libtrust} (thumbprint {thumbprint})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
