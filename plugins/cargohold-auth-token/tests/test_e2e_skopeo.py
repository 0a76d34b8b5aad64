"""End to end: skopeo through the full token flow against a ``cargohold
serve`` process running the token provider and its built-in token server,
configured with its documentation page's configuration and access rules (keys from the
keygen command, an htpasswd file)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from cargohold.testing.auth import write_htpasswd
from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

USERS = {"alice": "alice-pw", "bob": "bob-pw"}

# The plugin's documentation page (its README links there).
DOC_PAGE = Path(__file__).resolve().parents[3] / "docs" / "security" / "token-plugin.md"


def readme_yaml(first_line: str) -> str:
    """The documentation page's YAML block starting with ``first_line``."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC_PAGE.read_text(), re.S)
    matching = [b for b in blocks if b.startswith(first_line)]
    assert len(matching) == 1, f"{DOC_PAGE.name} has no single yaml block starting with {first_line!r}"
    return matching[0]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """``cargohold serve`` with the documentation page's rules and configuration, its
    paths and URLs pointed at a temporary directory and a free port."""
    conf = tmp_path_factory.mktemp("token-e2e")
    subprocess.run([sys.executable, "-m", "cargohold_auth_token.keygen", str(conf / "token")], check=True,
                   capture_output=True)
    write_htpasswd(conf / "htpasswd", USERS)
    live = LiveRegistry(config_file=str(conf / "config.yml"))
    (conf / "access.yml").write_text(readme_yaml("groups:"))
    config = readme_yaml("version: 0.1")
    for old, new in (("https://registry.example.com", live.url), ("/etc/cargohold/", f"{conf}/"),
                     ("/var/lib/cargohold", str(conf / "data"))):
        assert old in config, old
        config = config.replace(old, new)
    (conf / "config.yml").write_text(config)
    with live:
        yield live


@pytest.fixture(scope="module")
def skopeo(registry, tmp_path_factory) -> Skopeo:
    return Skopeo(find_skopeo(), tmp_path_factory.mktemp("skopeo-home"), registry)


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


def test_push_and_pull_through_the_token_flow(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "v1", layers=3, seed="token-flow")
    remote = skopeo.docker("team/app", "v1")
    skopeo.copy(image.ref, remote, "--preserve-digests", "--dest-creds", creds("alice"))
    skopeo.copy(remote, f"oci:{tmp_path / 'back'}:v1", "--preserve-digests", "--src-creds", creds("alice"))
    assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
    assert read_blobs(tmp_path / "back") == read_blobs(image.path)
    # Without credentials the private repository stays closed.
    denied = skopeo.run("inspect", "--tls-verify=false", "--raw", remote, check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "authentication required" in denied.stderr.lower()


def test_anonymous_pull_of_a_public_repository(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "1.0", layers=2, seed="public")
    remote = skopeo.docker("public/tool", "1.0")
    skopeo.copy(image.ref, remote, "--preserve-digests", "--dest-creds", creds("alice"))
    skopeo.copy(remote, f"oci:{tmp_path / 'anon'}:1.0", "--preserve-digests")  # no credentials at all
    assert read_blobs(tmp_path / "anon") == read_blobs(image.path)
    assert "1.0" in skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/public/tool").stdout


def test_push_to_a_public_repository_still_needs_credentials(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "evil", layers=1, seed="anonymous push")
    remote = skopeo.docker("public/tool", "evil")
    proc = skopeo.run("copy", "--dest-tls-verify=false", image.ref, remote, check=False)
    assert proc.returncode != 0
    # bob may pull public/* but not push there.
    proc = skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", creds("bob"), image.ref, remote, check=False)
    assert proc.returncode != 0
    assert skopeo.run("inspect", "--tls-verify=false", remote, "--creds", creds("alice"), check=False).returncode != 0
    # Nothing of the refused pushes was stored.
    blobs = [d for d in read_blobs(image.path)]
    token = requests.get(f"{registry.url}/auth/token", params={"service": "registry.example.com",
                                                               "scope": "repository:public/tool:pull"},
                         auth=("alice", USERS["alice"]), timeout=30).json()["token"]
    for digest in blobs:
        resp = requests.head(f"{registry.url}/v2/public/tool/blobs/{digest}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert resp.status_code == 404, digest


def test_wrong_password_is_refused(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "x", layers=1, seed="wrong password")
    proc = skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", image.ref,
                      skopeo.docker("team/app", "x"), check=False)
    assert proc.returncode != 0
    assert "401" in proc.stderr or "unauthorized" in proc.stderr.lower()


def test_user_limited_to_own_repositories(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "b1", layers=2, seed="bob")
    skopeo.copy(image.ref, skopeo.docker("bob/app", "b1"), "--preserve-digests", "--dest-creds", creds("bob"))
    proc = skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", creds("bob"), image.ref,
                      skopeo.docker("team/bob-was-here", "b1"), check=False)
    assert proc.returncode != 0
    skopeo.copy(skopeo.docker("bob/app", "b1"), f"oci:{tmp_path / 'back'}:b1", "--src-creds", creds("alice"))
    assert read_blobs(tmp_path / "back") == read_blobs(image.path)
