"""Immutable tags on a live registry, pushed with skopeo: a protected tag
takes the same manifest again but never another one, and neither it nor
its manifest can be deleted; other tags move freely."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import requests
import yaml

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.testing.images import LayoutWriter
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo
from cargohold_policy_immutable import SEMVER, parse_rules

RULES = [{"name": "releases", "repositories": "team/*", "tags": ["semver", "release-*"]}]


@pytest.fixture(autouse=True, scope="module")
def plugin_installed():
    if not any(ep.value == "cargohold_policy_immutable" for ep in entry_points(group="cargohold")):
        pytest.fail("cargohold-policy-immutable is not installed: pip install -e plugins/cargohold-policy-immutable",
                    pytrace=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    config = tmp_path_factory.mktemp("immutable") / "config.yml"
    config.write_text(yaml.safe_dump({"policy": {"immutable": {"rules": RULES}}}))
    with LiveRegistry(config_file=str(config)) as live:
        yield live


@pytest.fixture(scope="module")
def skopeo(registry, tmp_path_factory):
    return Skopeo(find_skopeo(), tmp_path_factory.mktemp("skopeo-home"), registry)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """One layout holding two different images, tagged ``one`` and ``two``."""
    writer = LayoutWriter(tmp_path_factory.mktemp("layout"))
    return {tag: writer.tag(tag, writer.image(layers=2, seed=tag)) for tag in ("one", "two")}


def digest_at(registry, repository: str, tag: str) -> str:
    resp = requests.head(f"{registry.url}/v2/{repository}/manifests/{tag}", timeout=30,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 200, resp.text
    return resp.headers["Docker-Content-Digest"]


def denied(resp: requests.Response) -> str:
    assert resp.status_code == 403, resp.text
    [error] = resp.json()["errors"]
    assert error["code"] == "DENIED"
    return error["message"]


def test_repush_of_the_same_manifest_is_allowed_and_a_move_refused(registry, skopeo, layout):
    target = skopeo.docker("team/app", "v1.2.3")
    skopeo.copy(layout["one"].ref, target, "--preserve-digests")
    skopeo.copy(layout["one"].ref, target, "--preserve-digests")  # identical: the tag does not move

    moved = skopeo.run("copy", "--dest-tls-verify=false", "--preserve-digests", layout["two"].ref, target,
                       check=False)
    assert moved.returncode != 0
    assert "denied" in moved.stderr.lower()
    assert "'v1.2.3' is immutable (rule 'releases', pattern 'semver')" in moved.stderr
    assert digest_at(registry, "team/app", "v1.2.3") == layout["one"].digest


def test_protected_tag_and_its_manifest_cannot_be_deleted(registry, skopeo, layout):
    skopeo.copy(layout["one"].ref, skopeo.docker("team/del", "release-2024"), "--preserve-digests")
    digest = layout["one"].digest
    message = denied(requests.delete(f"{registry.url}/v2/team/del/manifests/release-2024", timeout=30))
    assert message == "tag 'release-2024' is immutable (rule 'releases', pattern 'release-*'): it cannot be deleted"
    message = denied(requests.delete(f"{registry.url}/v2/team/del/manifests/{digest}", timeout=30))
    assert "the manifest it points at cannot be deleted" in message
    assert digest_at(registry, "team/del", "release-2024") == digest


def test_other_tags_and_other_repositories_move_and_delete(registry, skopeo, layout):
    for repository, tag in (("team/free", "latest"), ("elsewhere/app", "v1.0.0")):
        skopeo.copy(layout["one"].ref, skopeo.docker(repository, tag), "--preserve-digests")
        skopeo.copy(layout["two"].ref, skopeo.docker(repository, tag), "--preserve-digests")
        assert digest_at(registry, repository, tag) == layout["two"].digest
        assert requests.delete(f"{registry.url}/v2/{repository}/manifests/{tag}", timeout=30).status_code == 202


@pytest.mark.parametrize("tag, protected", [
    ("1.2.3", True), ("v1.2.3", True), ("v1.2.3-rc.1", True), ("10.0.0-alpha-2", True),
    ("1.2", False), ("v01.2.3", False), ("latest", False), ("1.2.3_build", False),
])
def test_semver_shortcut(tag, protected):
    assert bool(SEMVER.fullmatch(tag)) is protected
    [rule] = parse_rules({"rules": [{"tags": ["semver"]}]})
    assert (rule.pattern_for(tag) is not None) is protected and rule.name == "rule-0" and rule.covers("any/repo")


@pytest.mark.parametrize("rule, problem", [
    ({"tags": []}, "policy.immutable.rules[0].tags: expected a non-empty list of tag patterns"),
    ({"tags": ["v*"], "repos": "x"}, "unknown key 'policy.immutable.rules[0].repos'"),
])
def test_bad_rules_fail_startup_naming_the_key(rule, problem):
    with pytest.raises(ConfigError) as info:
        create_app({"storage": {"inmemory": {}}, "policy": {"immutable": {"rules": [rule]}}}, environ={})
    assert problem in str(info.value)
