"""The token verifier: every accepted algorithm, and the bad-token table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cargohold.auth import Access
from cargohold_auth_token.keys import load_cert_bundle, load_jwks
from cargohold_auth_token.testing import ISSUER, SERVICE, bad_tokens, compact
from cargohold_auth_token.verifier import InvalidToken, TokenVerifier

PULL = [("repository", "team/app", ["pull"])]


@pytest.fixture(scope="module")
def verifier(bundle):
    return TokenVerifier(load_cert_bundle(str(bundle)), issuer=ISSUER, service=SERVICE)


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_each_algorithm_verifies_by_either_kid(verifier, signers, kind):
    signer = signers[kind]
    for kid in (signer.kid, signer.thumbprint):
        claims = verifier.verify(signer.token(PULL, headers={"kid": kid}))
        assert claims.subject == "alice"
        assert claims.access.covers(Access("repository", "team/app", ("pull",)))
        assert not claims.access.covers(Access("repository", "team/app", ("pull", "push")))


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_jwks_keys_verify_by_their_kid(tmp_path, signers, kind):
    signer = signers[kind]
    jwks = json.loads(signer.paths["jwks"].read_text())
    jwks["keys"][0]["kid"] = "my-key"
    path = tmp_path / "keys.jwks"
    path.write_text(json.dumps(jwks))
    verifier = TokenVerifier(load_jwks(str(path)), issuer=ISSUER, service=SERVICE)
    assert verifier.verify(signer.token(PULL, headers={"kid": "my-key"})).subject == "alice"


def test_audience_list_and_wildcard_actions(verifier, signer):
    claims = verifier.verify(signer.token([("repository", "a", ["*"])], aud=["other", SERVICE]))
    assert claims.access.covers(Access("repository", "a", ("pull", "push", "delete")))
    assert not claims.access.covers(Access("repository", "b", ("pull",)))


def test_clock_skew_within_leeway_is_tolerated(verifier, signer):
    now = int(time.time())
    verifier.verify(signer.token(PULL, exp=now - 30))
    verifier.verify(signer.token(PULL, nbf=now + 30))


def test_remembered_tokens_still_expire(bundle, signer):
    now = [time.time()]
    verifier = TokenVerifier(load_cert_bundle(str(bundle)), ISSUER, SERVICE, clock=lambda: now[0])
    token = signer.token(PULL, exp=int(now[0]) + 100, nbf=int(now[0]))
    assert verifier.verify(token).subject == "alice"
    now[0] += 100 + 61
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    now[0] -= 100 + 61 + 62
    with pytest.raises(InvalidToken, match="not valid yet"):
        verifier.verify(token)


def test_remembered_token_skips_the_signature_check(bundle, signer, monkeypatch):
    verifier = TokenVerifier(load_cert_bundle(str(bundle)), ISSUER, SERVICE)
    token = signer.token(PULL)
    verifier.verify(token)
    calls = []
    monkeypatch.setattr("jwt.decode", lambda *a, **k: calls.append(a))
    assert verifier.verify(token).subject == "alice" and calls == []
    monkeypatch.undo()
    with pytest.raises(InvalidToken, match="signature"):  # another token is not confused with it
        verifier.verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))


@pytest.mark.parametrize("claim,value", [("exp", "soon"), ("exp", float("nan")), ("exp", True), ("nbf", "x"),
                                         ("nbf", float("inf"))])
def test_malformed_time_claims_are_rejected(verifier, signer, claim, value):
    claims = {**signer.claims(PULL), claim: value}
    signing_input = compact({"alg": "ES256", "kid": signer.kid}, claims).rsplit(".", 1)[0]
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
        signing_input.encode(), signer.private_key)
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="malformed"):
        verifier.verify(token)


def test_anonymous_token_has_empty_subject(verifier, signer):
    assert verifier.verify(signer.token(PULL, sub="")).subject == ""


#: Why each of :func:`bad_tokens` is refused.
REASONS = {
    "expired": "expired",
    "not-yet-valid": "not valid yet",
    "wrong-audience": "another service",
    "wrong-issuer": "untrusted issuer",
    "no-expiry": "'exp'",
    "no-audience": "'aud'",
    "wrong-signature": "invalid signature",
    "tampered-claims": "invalid signature",
    "unknown-kid": "unknown key",
    "no-kid": "no 'kid'",
    "alg-none": "'none' is not accepted",
    "alg-none-capitalised": "'None' is not accepted",
    "hs256-with-public-key": "'HS256' is not accepted",
    "rs512-unsupported": "'RS512' is not accepted",
    "malformed": "malformed",
    "two-segments": "malformed",
    "bad-access-claim": "'access'",
    "bad-access-entry": "'access'",
}


def test_every_bad_token_has_a_reason(signer, stranger):
    assert sorted(bad_tokens(signer, stranger, PULL)) == sorted(REASONS)


@pytest.mark.parametrize("case", sorted(REASONS))
def test_bad_tokens_are_rejected(verifier, signer, stranger, case):
    token = bad_tokens(signer, stranger, PULL)[case]
    with pytest.raises(InvalidToken, match=REASONS[case]):
        verifier.verify(token)


def test_hs256_token_is_otherwise_well_formed(signer):
    # The forged token would verify as HS256 with the PEM as the secret: only
    # the algorithm check stands between it and acceptance.
    token = bad_tokens(signer, signer, PULL)["hs256-with-public-key"]
    pem = signer.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header, payload, signature = token.split(".")
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == mac


def test_key_of_another_algorithm_is_rejected(verifier, signers):
    # A token whose header claims ES256 under the RSA key's kid.
    rsa, ec = signers["rsa"], signers["ec"]
    with pytest.raises(InvalidToken, match="signs RS256, not ES256"):
        verifier.verify(ec.token(PULL, headers={"kid": rsa.kid}))


def test_restricting_algorithms(bundle, signers):
    verifier = TokenVerifier(load_cert_bundle(str(bundle)), ISSUER, SERVICE, algorithms=("EdDSA",))
    verifier.verify(signers["ed25519"].token(PULL))
    with pytest.raises(InvalidToken, match="'ES256' is not accepted"):
        verifier.verify(signers["ec"].token(PULL))
    with pytest.raises(ValueError, match="HS256"):
        TokenVerifier(load_cert_bundle(str(bundle)), ISSUER, SERVICE, algorithms=("HS256",))
