"""End to end: skopeo against ``cargohold serve`` with native TLS (a CA
made by openssl, verified by skopeo with ``--dest-cert-dir``) and the
htpasswd provider with cost-12 bcrypt entries and access rules."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from cargohold.testing.auth import write_htpasswd
from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo
from cargohold.testing.tls import make_test_ca

ALICE = "alice:wonderland"
RULES = """
rules:
  - repositories: ["public/*"]
    users: [anonymous]
    actions: [pull]
  - repositories: ["**"]
    users: [alice]
    actions: ["*"]
  - repositories: ["bob/**", "public/*"]
    users: [bob]
    actions: [pull]
  - registry: catalog
    users: ["*"]
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("htpasswd-tls")
    ca = make_test_ca(tmp)
    cert_dir = ca.client_cert_dir()
    htpasswd = write_htpasswd(tmp / "htpasswd", {"alice": "wonderland", "bob": "builder"}, cost=12)
    (tmp / "access.yml").write_text(RULES)
    config = tmp / "config.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "http": {"tls": {"certificate": ca.certificate, "key": ca.key}},
        "auth": {"htpasswd": {"realm": "e2e", "path": htpasswd, "access": str(tmp / "access.yml")}},
    }))
    with LiveRegistry(config_file=str(config), tls_ca=ca.ca) as registry:
        registry.cert_dir = str(cert_dir)
        registry.ca = ca.ca
        yield registry


@pytest.fixture
def skopeo(secured, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Skopeo(find_skopeo(), home, secured)


def tls(secured, side: str) -> list[str]:
    return [f"--{side}-tls-verify=true", f"--{side}-cert-dir", secured.cert_dir]


def same_blobs(a: Path, b: Path) -> bool:
    ours, theirs = read_blobs(a), read_blobs(b)
    return sorted(ours) == sorted(theirs) and all(ours[d] == theirs[d] for d in ours)


def test_push_and_pull_with_credentials_over_verified_tls(secured, skopeo, tmp_path):
    image = build_image(tmp_path / "src", "v1", layers=4, seed="htpasswd-tls")
    remote = skopeo.docker("team/app", "v1")
    started = time.monotonic()
    skopeo.run("copy", "--preserve-digests", *tls(secured, "dest"), "--dest-creds", ALICE, image.ref, remote)
    skopeo.run("copy", "--preserve-digests", *tls(secured, "src"), "--src-creds", ALICE, remote,
               f"oci:{tmp_path / 'back'}:v1")
    took = time.monotonic() - started
    assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
    assert same_blobs(image.path, tmp_path / "back")
    print(f"push + pull with cost-12 bcrypt credentials: {took:.2f}s")


def test_tls_is_verified(secured, skopeo, tmp_path):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="untrusted")
    # without the CA, skopeo refuses the certificate
    proc = skopeo.run("copy", "--dest-tls-verify=true", "--dest-creds", ALICE, image.ref,
                      skopeo.docker("team/untrusted", "v1"), check=False)
    assert proc.returncode != 0
    assert "certificate" in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("creds", [None, "alice:wrong", "mallory:wonderland", "bob:builder"],
                         ids=["anonymous", "wrong-password", "unknown-user", "not-allowed"])
def test_push_denied(secured, skopeo, tmp_path, creds):
    image = build_image(tmp_path / "src", "v1", layers=1, seed=f"denied-{creds}")
    args = ["--dest-creds", creds] if creds else []
    proc = skopeo.run("copy", *tls(secured, "dest"), *args, image.ref, skopeo.docker("public/denied", "v1"),
                      check=False)
    assert proc.returncode != 0, proc.stdout
    text = proc.stderr.lower()
    assert "unauthorized" in text or "denied" in text or "authentication required" in text, proc.stderr
    resp = requests.get(f"{secured.url}/v2/public/denied/tags/list", verify=secured.ca, timeout=30)
    assert resp.status_code == 404  # nothing was stored (and anonymous may look)


def test_anonymous_pull_of_public_repository_while_push_needs_credentials(secured, skopeo, tmp_path):
    image = build_image(tmp_path / "src", "v1", layers=2, seed="public")
    remote = skopeo.docker("public/app", "v1")
    skopeo.run("copy", "--preserve-digests", *tls(secured, "dest"), "--dest-creds", ALICE, image.ref, remote)

    skopeo.run("copy", "--preserve-digests", *tls(secured, "src"), remote, f"oci:{tmp_path / 'anon'}:v1")
    assert same_blobs(image.path, tmp_path / "anon")

    proc = skopeo.run("copy", *tls(secured, "dest"), image.ref, skopeo.docker("public/app", "anon"), check=False)
    assert proc.returncode != 0
    # a private repository is not readable anonymously
    skopeo.run("copy", *tls(secured, "dest"), "--dest-creds", ALICE, image.ref, skopeo.docker("private/app", "v1"))
    proc = skopeo.run("copy", *tls(secured, "src"), skopeo.docker("private/app", "v1"),
                      f"oci:{tmp_path / 'nope'}:v1", check=False)
    assert proc.returncode != 0


def test_catalog_filtered_per_user(secured, skopeo, tmp_path):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="catalog")
    for name in ("bob/tools", "secret/vault"):
        skopeo.run("copy", *tls(secured, "dest"), "--dest-creds", ALICE, image.ref, skopeo.docker(name, "v1"))
    bob = requests.get(f"{secured.url}/v2/_catalog", auth=("bob", "builder"), verify=secured.ca, timeout=30)
    assert bob.status_code == 200
    assert "bob/tools" in bob.json()["repositories"] and "secret/vault" not in bob.json()["repositories"]
    assert all(r.startswith(("bob/", "public/")) for r in bob.json()["repositories"])
    alice = requests.get(f"{secured.url}/v2/_catalog", auth=("alice", "wonderland"), verify=secured.ca, timeout=30)
    assert {"bob/tools", "secret/vault"} <= set(alice.json()["repositories"])
    anon = requests.get(f"{secured.url}/v2/_catalog", verify=secured.ca, timeout=30)
    assert anon.status_code == 401 and anon.headers["WWW-Authenticate"] == 'Basic realm="e2e"'
