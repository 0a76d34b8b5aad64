"""Fixtures: signing keys of every type, a key nobody trusts, htpasswd and
rules files, and apps configured with the token provider (and token
server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cargohold.testing.auth import write_htpasswd
from cargohold_auth_token.testing import Signer, token_auth_config

USERS = {"alice": "alice-secret", "bob": "bob-secret"}

RULES = {
    "groups": {"admins": ["alice"]},
    "rules": [
        {"repositories": ["public/*"], "users": ["anonymous", "*"], "actions": ["pull"]},
        {"repositories": ["**"], "users": ["group:admins"], "actions": ["*"]},
        {"repositories": ["bob/**"], "users": ["bob"], "actions": ["pull", "push"]},
        {"registry": "catalog", "users": ["*"]},
        {"registry": "metrics", "users": ["group:admins"]},
    ],
}


@pytest.fixture(scope="session")
def keydir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def signers(keydir) -> dict[str, Signer]:
    """One signer per key type: ``ec`` (ES256), ``rsa`` (RS256), ``ed25519`` (EdDSA)."""
    return {kind: Signer(keydir, kind) for kind in ("ec", "rsa", "ed25519")}


@pytest.fixture(scope="session")
def signer(signers) -> Signer:
    return signers["ec"]


@pytest.fixture(scope="session")
def stranger(tmp_path_factory) -> Signer:
    """A key nobody trusts."""
    return Signer(tmp_path_factory.mktemp("stranger"), "ec")


@pytest.fixture(scope="session")
def bundle(keydir, signers):
    """A PEM bundle with every signer's certificate."""
    path = keydir / "bundle.crt"
    path.write_bytes(b"".join(s.paths["crt"].read_bytes() for s in signers.values()))
    return path


@pytest.fixture(scope="session")
def htpasswd_file(tmp_path_factory):
    return Path(write_htpasswd(tmp_path_factory.mktemp("users") / "htpasswd", USERS))


@pytest.fixture(scope="session")
def rules_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "access.yml"
    path.write_text(yaml.safe_dump(RULES))
    return path


def registry_config(bundle, **auth) -> dict:
    return {"storage": {"inmemory": {}, "delete": {"enabled": True}}, "auth": token_auth_config(bundle, **auth)}


@pytest.fixture
def make_app(cargohold_make_app):
    """``make_app(config)``: an app with the installed plugins, the
    environment ignored; shut down after the test (the test kit's
    ``cargohold_make_app``)."""
    return cargohold_make_app


@pytest.fixture
def registry(make_app, bundle):
    """A test client of a registry with token auth trusting every signer."""
    return make_app(registry_config(bundle)).test_client()


@pytest.fixture
def token_server_config(bundle, signer, htpasswd_file, rules_file):
    """The config of a registry with token auth and its own token server
    (signing with the ``ec`` key, users and rules from the fixtures)."""
    config = registry_config(bundle)
    config["tokenserver"] = {"signingkey": str(signer.paths["key"]), "htpasswd": str(htpasswd_file),
                             "rules": str(rules_file)}
    return config


@pytest.fixture
def served(make_app, token_server_config):
    """A test client of the registry of :func:`token_server_config`."""
    return make_app(token_server_config).test_client()


@pytest.fixture(scope="session")
def users() -> dict[str, str]:
    """The htpasswd file's users and their passwords."""
    return dict(USERS)
