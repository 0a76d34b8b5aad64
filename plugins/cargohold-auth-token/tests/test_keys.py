"""Key IDs, trusted-key loading and the keygen helper."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK

from cargohold_auth_token.keygen import main as keygen_main, self_signed_certificate
from cargohold_auth_token.keys import (algorithm_for, libtrust_key_id, load_cert_bundle, load_jwks, load_private_key,
                                       thumbprint_key_id)


def test_libtrust_kid_matches_the_token_spec_example():
    # The ES256 key and kid of the example in the token spec (jwt.md).
    key = PyJWK({"kty": "EC", "crv": "P-256", "x": "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q",
                 "y": "dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"}).key
    assert libtrust_key_id(key) == "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"


def test_thumbprint_matches_rfc7638_example():
    key = PyJWK({"kty": "RSA", "e": "AQAB", "alg": "RS256", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMs"
        "tn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5"
        "hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}).key
    assert thumbprint_key_id(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_bundle_trusts_each_certificate_under_both_ids(bundle, signers):
    keys = load_cert_bundle(str(bundle))
    for kind, signer in signers.items():
        for kid in (signer.kid, signer.thumbprint):
            assert keys[kid].algorithm == signer.algorithm, kind
            assert keys[kid].key.public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) == \
                signer.public_key.public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    assert {k.algorithm for k in keys.values()} == {"ES256", "RS256", "EdDSA"}


def test_jwks_trusts_keys_under_their_kid_and_derived_ids(tmp_path, signers):
    jwks = {"keys": []}
    for signer in signers.values():
        jwk = json.loads(signer.paths["jwks"].read_text())["keys"][0]
        jwk["kid"] = f"custom-{signer.algorithm}"
        jwks["keys"].append(jwk)
    path = tmp_path / "keys.jwks"
    path.write_text(json.dumps(jwks))
    keys = load_jwks(str(path))
    for signer in signers.values():
        for kid in (f"custom-{signer.algorithm}", signer.kid, signer.thumbprint):
            assert keys[kid].algorithm == signer.algorithm


@pytest.mark.parametrize("content,message", [
    (b"", "no PEM certificates"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "no PEM certificates"),
])
def test_bad_bundle_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.crt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as e:
        load_cert_bundle(str(path))
    assert str(path) in str(e.value) and str(e.value).startswith("rootcertbundle:")


def test_missing_files_name_the_key(tmp_path):
    for loader, key in ((load_cert_bundle, "rootcertbundle"), (load_jwks, "jwks"), (load_private_key, "signingkey")):
        with pytest.raises(ValueError, match=f"^{key}: cannot read {tmp_path}/nope"):
            loader(str(tmp_path / "nope"))


@pytest.mark.parametrize("content,message", [
    ("not json", "not JSON"),
    ('{"keys": []}', "at least one key"),
    ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "key 1"),
    ('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}', "key 1"),
])
def test_bad_jwks_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.jwks"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_jwks(str(path))


def test_hmac_secret_in_jwks_is_refused(tmp_path):
    path = tmp_path / "oct.jwks"
    path.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "shared"}]}')
    with pytest.raises(ValueError, match="shared"):
        load_jwks(str(path))


@pytest.mark.parametrize("key,message", [
    (ec.generate_private_key(ec.SECP384R1()), "P-256"),
    (rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048 bits"),
])
def test_unsupported_keys_are_refused(tmp_path, key, message):
    with pytest.raises(ValueError, match=message):
        algorithm_for(key.public_key())
    path = tmp_path / "weak.crt"
    path.write_bytes(self_signed_certificate(key).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ValueError, match=message):
        load_cert_bundle(str(path))


def test_encrypted_private_key_is_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "enc.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(ValueError, match="signingkey: .*unencrypted PEM private key"):
        load_private_key(str(path))


def test_keygen_command_writes_usable_files(tmp_path, capsys):
    assert keygen_main([str(tmp_path / "out"), "--type", "rsa"]) == 0
    out = capsys.readouterr().out
    key = load_private_key(str(tmp_path / "out" / "token.key"))
    assert algorithm_for(key) == "RS256"
    assert (tmp_path / "out" / "token.key").stat().st_mode & 0o077 == 0
    kid = libtrust_key_id(key.public_key())
    assert kid in out
    assert kid in load_cert_bundle(str(tmp_path / "out" / "token.crt"))
    assert kid in load_jwks(str(tmp_path / "out" / "token.jwks"))
