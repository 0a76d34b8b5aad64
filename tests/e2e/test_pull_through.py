"""Pull-through cache end to end: one ``cargohold serve`` mirror in front of
two real upstreams on loopback, with real clients.

* Upstream ``ref``: the reference registry (Debian's ``docker-registry``)
  with htpasswd auth; the mirror serves it below ``ref/`` and for
  ``?ns=ref.test``.
* Upstream ``hold``: a second cargohold with token auth (its built-in token
  server); the mirror serves it below ``hold/`` and for ``?ns=hold.test``.

skopeo pushes upstream and pulls through the mirror; the upstreams' own
logs and counters show what the mirror asked them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cargohold.testing.auth import write_htpasswd
from cargohold.testing.containerd import Containerd
from cargohold.testing.images import OCI_INDEX, OCI_MANIFEST, build_image, build_index, read_blobs, sha256, tagged
from cargohold.testing.notifications import EventReceiver
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.services import ReferenceRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

USERS = {"mirror": "mirror-pw", "alice": "alice-pw"}
TAG_TTL = 3.0
TIMEOUT = 3.0
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


@pytest.fixture(scope="module")
def ref_upstream(tmp_path_factory):
    """The reference registry, htpasswd auth."""
    conf = tmp_path_factory.mktemp("ref-upstream")
    htpasswd = write_htpasswd(conf / "htpasswd", USERS)
    with ReferenceRegistry(config={"auth": {"htpasswd": {"realm": "ref", "path": str(htpasswd)}}}) as ref:
        yield ref


@pytest.fixture(scope="module")
def hold_upstream(tmp_path_factory):
    """A second cargohold with token auth and its own token server."""
    conf = tmp_path_factory.mktemp("hold-upstream")
    subprocess.run([sys.executable, "-m", "cargohold_auth_token.keygen", str(conf / "token")], check=True,
                   capture_output=True)
    write_htpasswd(conf / "htpasswd", USERS)
    (conf / "access.yml").write_text(yaml.safe_dump({"rules": [
        {"repositories": ["**"], "users": ["alice"], "actions": ["*"]},
        {"repositories": ["**"], "users": ["mirror"], "actions": ["pull"]},
    ]}))
    live = LiveRegistry(config_file=str(conf / "config.yml"))
    live.metrics_url = f"http://127.0.0.1:{free_port()}"  # its counters, outside token auth
    (conf / "config.yml").write_text(yaml.safe_dump({
        "version": "0.1",
        "http": {"debug": {"addr": live.metrics_url.split("//")[1]}},
        "auth": {"token": {"realm": f"{live.url}/auth/token", "service": "hold.test", "issuer": "hold.test/token",
                           "rootcertbundle": str(conf / "token" / "token.crt")}},
        "tokenserver": {"signingkey": str(conf / "token" / "token.key"), "htpasswd": str(conf / "htpasswd"),
                        "rules": str(conf / "access.yml"), "expiration": "5m"},
    }))
    with live:
        yield live


def mirror_config(ref_url: str, hold_url: str, **extra) -> dict:
    return {
        "version": "0.1",
        "proxy": {"upstreams": [
            {"url": ref_url, "username": "mirror", "password": USERS["mirror"], "prefix": "ref/",
             "ns": ["ref.test"], "tagttl": f"{TAG_TTL}s", "timeout": f"{TIMEOUT}s", **extra},
            {"url": hold_url, "username": "mirror", "password": USERS["mirror"], "prefix": "hold/",
             "ns": ["hold.test"], "tagttl": f"{TAG_TTL}s", "timeout": f"{TIMEOUT}s", **extra},
        ]},
    }


@pytest.fixture(scope="module")
def receiver():
    with EventReceiver() as events:
        yield events


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, ref_upstream, hold_upstream, receiver):
    conf = tmp_path_factory.mktemp("mirror")
    config = mirror_config(ref_upstream.url, hold_upstream.url)
    # The reference again, with a password it refuses.
    config["proxy"]["upstreams"].append({"url": ref_upstream.url, "username": "mirror", "password": "wrong",
                                         "prefix": "badref/", "timeout": f"{TIMEOUT}s"})
    config["notifications"] = {"endpoints": [{"name": "events", "url": receiver.url, "timeout": "2s",
                                              "backoff": "100ms"}]}
    (conf / "config.yml").write_text(yaml.safe_dump(config))
    with LiveRegistry(config_file=str(conf / "config.yml"), env={"CARGOHOLD_LOG_LEVEL": "info"}) as live:
        yield live


def skopeo_for(registry, tmp_path_factory, name: str) -> Skopeo:
    return Skopeo(find_skopeo(), tmp_path_factory.mktemp(name), registry)


@pytest.fixture(scope="module")
def via_mirror(mirror, tmp_path_factory) -> Skopeo:
    return skopeo_for(mirror, tmp_path_factory, "skopeo-mirror")


@pytest.fixture(scope="module")
def to_ref(ref_upstream, tmp_path_factory) -> Skopeo:
    return skopeo_for(ref_upstream, tmp_path_factory, "skopeo-ref")


@pytest.fixture(scope="module")
def to_hold(hold_upstream, tmp_path_factory) -> Skopeo:
    return skopeo_for(hold_upstream, tmp_path_factory, "skopeo-hold")


def push(skopeo: Skopeo, image, repository: str, tag: str, *options: str) -> None:
    skopeo.copy(image.ref, skopeo.docker(repository, tag), "--preserve-digests", "--dest-creds", creds("alice"),
                *options)


def pull(skopeo: Skopeo, repository: str, tag: str, dest, *options: str) -> None:
    skopeo.copy(skopeo.docker(repository, tag), f"oci:{dest}:{tag}", "--preserve-digests", *options)


def ref_blob_gets(ref: ReferenceRegistry, repository: str) -> int:
    """GETs of blobs of ``repository`` in the reference's access log."""
    return len(re.findall(rf'"GET /v2/{re.escape(repository)}/blobs/sha256:[0-9a-f]+ HTTP', ref.log()))


def scrape(url: str) -> dict:
    resp = requests.get(url + "/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def hold_requests(hold: LiveRegistry, route: str) -> float:
    """GETs of ``route`` the token-auth upstream counted."""
    return sum(v for (name, labels), v in scrape(hold.metrics_url).items()
               if name == "cargohold_http_requests_total" and ("route", route) in labels
               and ("method", "GET") in labels)


def hold_blob_gets(hold: LiveRegistry) -> float:
    return hold_requests(hold, "v2.get_blob")


def error_codes(resp: requests.Response) -> list[str]:
    return [e["code"] for e in resp.json()["errors"]]


# -- pulls through the mirror -------------------------------------------------------------------------------------


def test_image_from_the_reference_by_prefix_is_byte_identical_and_cached(tmp_path, ref_upstream, mirror, to_ref,
                                                                          via_mirror):
    image = build_image(tmp_path / "src", "v1", layers=3, seed="proxy-ref-image")
    push(to_ref, image, "team/app", "v1")
    pull(via_mirror, "ref/team/app", "v1", tmp_path / "first")
    assert tagged(tmp_path / "first", "v1")["digest"] == image.digest
    assert read_blobs(tmp_path / "first") == read_blobs(image.path)
    fetched = ref_blob_gets(ref_upstream, "team/app")
    assert fetched >= 4  # config and three layers, from the upstream once

    pull(via_mirror, "ref/team/app", "v1", tmp_path / "second")
    assert read_blobs(tmp_path / "second") == read_blobs(image.path)
    assert ref_blob_gets(ref_upstream, "team/app") == fetched, "the second pull asked the upstream for blobs"


def test_index_from_token_upstream_by_prefix_is_byte_identical_and_cached(tmp_path, hold_upstream, mirror, to_hold,
                                                                           via_mirror):
    index = build_index(tmp_path / "src", "multi", archs=("amd64", "arm64"), seed="proxy-hold-index")
    push(to_hold, index, "team/multi", "multi", "--all")
    before = hold_blob_gets(hold_upstream)
    tokens_before = hold_requests(hold_upstream, "token_server.token")
    pull(via_mirror, "hold/team/multi", "multi", tmp_path / "first", "--all")
    assert tagged(tmp_path / "first", "multi")["digest"] == index.digest
    assert read_blobs(tmp_path / "first") == read_blobs(index.path)
    fetched = hold_blob_gets(hold_upstream)
    assert fetched - before >= 6  # two configs and four layers
    # One token for the repository, reused for every request after it.
    assert hold_requests(hold_upstream, "token_server.token") - tokens_before == 1

    pull(via_mirror, "hold/team/multi", "multi", tmp_path / "second", "--all")
    assert read_blobs(tmp_path / "second") == read_blobs(index.path)
    assert hold_blob_gets(hold_upstream) == fetched, "the second pull asked the upstream for blobs"


def test_ns_parameter_selects_the_upstream_and_is_echoed(tmp_path, mirror, to_ref, to_hold):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="proxy-ns")
    push(to_ref, image, "ns/app", "v1")
    push(to_hold, image, "ns/app", "v1")
    for ns in ("ref.test", "hold.test"):
        resp = requests.get(f"{mirror.url}/v2/ns/app/manifests/v1", params={"ns": ns},
                            headers={"Accept": ACCEPT}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["OCI-Namespace"] == ns
        assert resp.headers["Docker-Content-Digest"] == image.digest
    # Cached under the upstream's prefix: the same content by name.
    resp = requests.get(f"{mirror.url}/v2/hold/ns/app/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    assert resp.status_code == 200 and "OCI-Namespace" not in resp.headers
    # An ns nobody answers is ignored: an ordinary (here empty) repository.
    resp = requests.get(f"{mirror.url}/v2/ns/app/manifests/v1", params={"ns": "quay.io"}, timeout=30)
    assert resp.status_code == 404 and "OCI-Namespace" not in resp.headers
    assert error_codes(resp) == ["MANIFEST_UNKNOWN"]


def test_tags_list_comes_from_the_upstream(tmp_path, mirror, to_ref):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="proxy-tags")
    for tag in ("a", "b", "c"):
        push(to_ref, image, "team/tags", tag)
    resp = requests.get(f"{mirror.url}/v2/ref/team/tags/tags/list", timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["name"] == "ref/team/tags" and sorted(body["tags"]) == ["a", "b", "c"]
    page = requests.get(f"{mirror.url}/v2/ref/team/tags/tags/list", params={"n": 2}, timeout=30)
    assert len(page.json()["tags"]) == 2
    assert page.headers["Link"].startswith("</v2/ref/team/tags/tags/list?")


def test_pushes_into_a_proxied_namespace_are_refused_others_work(tmp_path, mirror, via_mirror):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="proxy-push")
    resp = requests.post(f"{mirror.url}/v2/ref/team/app/blobs/uploads/", timeout=30)
    assert resp.status_code == 405
    assert error_codes(resp) == ["UNSUPPORTED"]
    resp = requests.put(f"{mirror.url}/v2/hold/team/app/manifests/x", data=b"{}", timeout=30,
                        headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 405 and error_codes(resp) == ["UNSUPPORTED"]
    resp = requests.delete(f"{mirror.url}/v2/ref/team/app/manifests/v1", timeout=30)
    assert resp.status_code == 405 and error_codes(resp) == ["UNSUPPORTED"]
    failed = via_mirror.run("copy", "--dest-tls-verify=false", image.ref, via_mirror.docker("ref/mine/app", "v1"),
                            check=False)
    assert failed.returncode != 0
    # Outside the proxied namespaces: an ordinary registry.
    via_mirror.copy(image.ref, via_mirror.docker("local/app", "v1"), "--preserve-digests")
    via_mirror.copy(via_mirror.docker("local/app", "v1"), f"oci:{tmp_path / 'back'}:v1", "--preserve-digests")
    assert read_blobs(tmp_path / "back") == read_blobs(image.path)


def test_a_moved_tag_is_seen_after_its_ttl_and_not_before(tmp_path, mirror, to_ref):
    first = build_image(tmp_path / "one", "latest", layers=1, seed="proxy-move-1")
    second = build_image(tmp_path / "two", "latest", layers=1, seed="proxy-move-2")
    push(to_ref, first, "team/moving", "latest")

    def served() -> str:
        resp = requests.get(f"{mirror.url}/v2/ref/team/moving/manifests/latest", headers={"Accept": ACCEPT},
                            timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.headers["Docker-Content-Digest"]

    assert served() == first.digest
    cached_at = time.monotonic()
    push(to_ref, second, "team/moving", "latest")
    while time.monotonic() - cached_at < TAG_TTL - 1.0:
        assert served() == first.digest, "the tag moved before its TTL was over"
        time.sleep(0.3)
    time.sleep(max(0.0, TAG_TTL + 0.2 - (time.monotonic() - cached_at)))
    assert served() == second.digest
    # By digest, both stay pullable (content addressed).
    resp = requests.get(f"{mirror.url}/v2/ref/team/moving/manifests/{first.digest}", headers={"Accept": ACCEPT},
                        timeout=30)
    assert resp.status_code == 200


def test_metrics_count_hits_misses_and_bytes(tmp_path, mirror, to_ref, ref_upstream, receiver):
    image = build_image(tmp_path / "src", "v1", layers=2, seed="proxy-metrics")
    push(to_ref, image, "team/metrics", "v1")
    before = scrape(mirror.url)
    manifest = requests.get(f"{mirror.url}/v2/ref/team/metrics/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    layer = json.loads(manifest.content)["layers"][0]
    for _ in range(2):
        resp = requests.get(f"{mirror.url}/v2/ref/team/metrics/blobs/{layer['digest']}", timeout=30)
        assert resp.status_code == 200 and len(resp.content) == layer["size"]
    after = scrape(mirror.url)
    scraped = [after]

    def delta(name, **labels):
        key = (name, frozenset({"upstream": ref_upstream.url, **labels}.items()))
        return scraped[-1].get(key, 0) - before.get(key, 0)

    assert delta("cargohold_proxy_lookups_total", kind="blob", result="miss") == 1
    assert delta("cargohold_proxy_lookups_total", kind="blob", result="hit") == 1
    assert delta("cargohold_proxy_lookups_total", kind="manifest", result="miss") == 1
    assert delta("cargohold_proxy_fetched_bytes_total") == layer["size"] + len(manifest.content)
    # After tagttl, an unchanged tag is revalidated with a HEAD, not fetched again.
    time.sleep(TAG_TTL + 0.2)
    again = requests.get(f"{mirror.url}/v2/ref/team/metrics/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    assert again.content == manifest.content
    scraped.append(scrape(mirror.url))
    assert delta("cargohold_proxy_lookups_total", kind="manifest", result="revalidated") == 1
    assert delta("cargohold_proxy_lookups_total", kind="manifest", result="miss") == 1
    assert delta("cargohold_proxy_fetched_bytes_total") == layer["size"] + len(manifest.content)
    # The pull streamed from the upstream says so in its event.
    digest = manifest.headers["Docker-Content-Digest"]
    for url in (f"{ref_upstream.url}/v2/team/metrics/blobs/{layer['digest']}",
                f"{ref_upstream.url}/v2/team/metrics/manifests/{digest}"):
        receiver.wait_for(lambda events: any(e["action"] == "pull" and e["target"].get("url") == url
                                              for e in events))
    # Pulls served from the cache name the mirror.
    receiver.wait_for(lambda events: any(
        e["action"] == "pull" and e["target"].get("url") == f"{mirror.url}/v2/ref/team/metrics/blobs/{layer['digest']}"
        for e in events))


def test_an_upstream_refusing_the_mirrors_credentials_gives_denied(tmp_path, mirror, to_ref):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="proxy-denied")
    push(to_ref, image, "team/denied", "v1")
    resp = requests.get(f"{mirror.url}/v2/badref/team/denied/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    assert resp.status_code == 403
    assert error_codes(resp) == ["DENIED"]
    assert "refused the mirror's credentials" in resp.json()["errors"][0]["message"]


def test_referrers_come_from_the_upstream(tmp_path, hold_upstream, mirror, to_hold):
    image = build_image(tmp_path / "src", "v1", layers=1, seed="proxy-referrers")
    push(to_hold, image, "team/signed", "v1")
    token = requests.get(f"{hold_upstream.url}/auth/token", auth=("alice", USERS["alice"]), timeout=30,
                         params={"service": "hold.test", "scope": "repository:team/signed:pull,push"}).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    config = b"{}"
    resp = requests.post(f"{hold_upstream.url}/v2/team/signed/blobs/uploads/", params={"digest": sha256(config)},
                         data=config, headers=auth, timeout=30)
    assert resp.status_code == 201, resp.text
    signature = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(config), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(config), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": 1},
    }).encode()
    resp = requests.put(f"{hold_upstream.url}/v2/team/signed/manifests/{sha256(signature)}", data=signature,
                        headers={**auth, "Content-Type": OCI_MANIFEST}, timeout=30)
    assert resp.status_code == 201, resp.text
    resp = requests.get(f"{mirror.url}/v2/hold/team/signed/referrers/{image.digest}", timeout=30)
    assert resp.status_code == 200, resp.text
    assert [d["digest"] for d in resp.json()["manifests"]] == [sha256(signature)]
    assert resp.json()["manifests"][0]["artifactType"] == "application/vnd.example.signature"


# -- the upstream goes away ---------------------------------------------------------------------------------------


def test_upstream_down_cached_content_is_served_uncached_fails_fast(tmp_path, ref_upstream, mirror, to_ref,
                                                                    via_mirror):
    cached = build_image(tmp_path / "cached", "v1", layers=2, seed="proxy-down-cached")
    uncached = build_image(tmp_path / "uncached", "v1", layers=2, seed="proxy-down-uncached")
    push(to_ref, cached, "team/down", "v1")
    push(to_ref, uncached, "team/never", "v1")
    pull(via_mirror, "ref/team/down", "v1", tmp_path / "warm")
    time.sleep(TAG_TTL + 0.2)  # the tag needs revalidation now
    ref_upstream.stop()
    try:
        pull(via_mirror, "ref/team/down", "v1", tmp_path / "stale")
        assert read_blobs(tmp_path / "stale") == read_blobs(cached.path)
        assert "serving cached tag v1 of ref/team/down" in mirror.log()
        started = time.monotonic()
        resp = requests.get(f"{mirror.url}/v2/ref/team/never/manifests/v1", headers={"Accept": ACCEPT}, timeout=60)
        assert time.monotonic() - started < 2 * TIMEOUT + 5
        assert resp.status_code == 503
        assert error_codes(resp) == ["UNAVAILABLE"]
        assert "unreachable" in resp.json()["errors"][0]["message"]
        resp = requests.get(f"{mirror.url}/v2/ref/team/never/blobs/{uncached.digest}", timeout=60)
        assert resp.status_code == 503 and error_codes(resp) == ["UNAVAILABLE"]
        # Tags of a proxied repository: the cached ones while the upstream is away.
        resp = requests.get(f"{mirror.url}/v2/ref/team/down/tags/list", timeout=60)
        assert resp.status_code == 200 and resp.json()["tags"] == ["v1"]
    finally:
        ref_upstream.start()
    pull(via_mirror, "ref/team/never", "v1", tmp_path / "later")
    assert read_blobs(tmp_path / "later") == read_blobs(uncached.path)


# -- containerd -----------------------------------------------------------------------------------------------------


def test_containerd_pulls_through_the_mirror_with_ns(tmp_path, mirror, to_ref, to_hold):
    """``ctr`` with a ``hosts.toml`` naming the mirror for ``ref.test`` and
    ``hold.test``: containerd sends ``?ns=<host>``, the mirror serves the
    upstream answering it and says so in ``OCI-Namespace``."""
    index = build_index(tmp_path / "src", "multi", archs=("amd64", "arm64"), seed="proxy-ctr")
    push(to_ref, index, "team/ctr", "multi", "--all")
    push(to_hold, index, "team/ctr", "multi", "--all")
    expected = read_blobs(index.path)
    with Containerd() as containerd:
        for host in ("ref.test", "hold.test"):
            hosts_dir = containerd.hosts_dir(host, mirror.url)
            pulled = containerd.ctr("images", "pull", "--all-platforms", "--http-dump", "--hosts-dir", hosts_dir,
                                    f"{host}/team/ctr:multi")
            dump = pulled.stdout.decode(errors="replace") + pulled.stderr.decode(errors="replace")
            assert f"ns={host}" in dump, "containerd did not send the ns parameter"
            assert re.search(rf"(?i)oci-namespace: {re.escape(host)}", dump), "the mirror did not answer OCI-Namespace"
            listed = containerd.ctr("images", "ls", "--quiet").stdout.decode().split()
            assert f"{host}/team/ctr:multi" in listed
        for digest, data in expected.items():
            assert containerd.content(digest) == data, f"{digest} differs after the pull through containerd"
