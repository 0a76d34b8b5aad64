"""The garbage collector (cargohold.gc) against a real app on in-memory
storage: what it keeps, what it sweeps, the handshake with requests, the
lease."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cargohold.gc.collector import Collector
from cargohold.gc.lease import Lease, LeaseError
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound
from .helpers import (
    OCI_MANIFEST, digest_of, image_manifest, push_blob, push_image, put_manifest,
)

#: A negative grace puts the cutoff in the future: everything counts as old.
ALL_OLD = -60.0


@pytest.fixture
def short(make_app):
    """An app whose registry is told the collector's grace is 1s (so it
    records uses at least every 0.5s): ``(client, state)``."""
    app = make_app({"storage": {"inmemory": {}, "delete": {"enabled": True},
                                "maintenance": {"gc": {"grace": "1s"}}}})
    return app.test_client(), app.extensions["cargohold"]


def exists(driver, path: str) -> bool:
    try:
        driver.stat(path)
        return True
    except PathNotFound:
        return False


def blob_digests(manifest_raw: bytes) -> list[str]:
    doc = json.loads(manifest_raw)
    return [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]


def store_blobs(driver) -> set[str]:
    found = set()
    try:
        for info in driver.walk(paths.BLOBS):
            digest = paths.digest_from_blob_data(info.path)
            if digest:
                found.add(digest)
    except PathNotFound:
        pass
    return found


def collect(state, **kw) -> Collector:
    kw.setdefault("grace", ALL_OLD)
    collector = Collector(state.driver, **kw)
    collector.run()
    return collector


def test_deleted_image_is_swept_and_tagged_ones_stay(client, state):
    keep_digest, keep_raw = push_image(client, "team/app", "v1", layer=b"shared")
    gone_digest, gone_raw = push_image(client, "team/app", "v2", layer=b"only-v2")
    assert client.delete(f"/v2/team/app/manifests/{gone_digest}").status_code == 202
    report = collect(state).report
    blobs = store_blobs(state.driver)
    assert gone_digest not in blobs
    assert not set(blob_digests(gone_raw)) & blobs - set(blob_digests(keep_raw))
    assert {keep_digest, *blob_digests(keep_raw)} <= blobs
    resp = client.get("/v2/team/app/manifests/v1")
    assert resp.status_code == 200 and resp.data == keep_raw
    for digest in blob_digests(keep_raw):
        assert client.get(f"/v2/team/app/blobs/{digest}").status_code == 200
    assert report.blobs_swept == 3  # the manifest, its config and its layer
    assert client.head(f"/v2/team/app/blobs/{blob_digests(gone_raw)[1]}").status_code == 404


def test_bytes_reclaimed_and_store_size(client, state):
    _, keep_raw = push_image(client, "a/b", "v1", layer=b"x" * 1000)
    gone_digest, gone_raw = push_image(client, "a/b", "v2", layer=b"y" * 5000)
    client.delete(f"/v2/a/b/manifests/{gone_digest}")
    before = sum(i.size for i in state.driver.walk(paths.BLOBS) if not i.is_dir)
    report = collect(state).report
    after = sum(i.size for i in state.driver.walk(paths.BLOBS) if not i.is_dir)
    assert report.bytes_reclaimed == before - after > 5000
    referenced = len(keep_raw) + sum(len(client.get(f"/v2/a/b/blobs/{d}").data) for d in blob_digests(keep_raw))
    assert after == referenced


def test_untagged_manifests_stay_unless_asked(client, state):
    untagged, raw = push_image(client, "team/app", None, layer=b"untagged")
    collect(state)
    assert client.get(f"/v2/team/app/manifests/{untagged}").status_code == 200
    collector = collect(state, delete_untagged=True)
    assert collector.report.manifests_swept == 1
    assert client.get(f"/v2/team/app/manifests/{untagged}").status_code == 404
    assert not set(blob_digests(raw)) & store_blobs(state.driver)
    # The repository had nothing else: it is gone from the catalog.
    assert collector.report.repositories_removed == 1
    assert client.get("/v2/_catalog").get_json()["repositories"] == []


def test_young_content_is_kept(client, state):
    digest, raw = push_image(client, "team/app", None, layer=b"young")
    blob = push_blob(client, "team/app", b"uploaded, not referenced yet")
    report = collect(state, grace=3600, delete_untagged=True).report
    assert report.blobs_swept == report.manifests_swept == 0
    assert {digest, blob, *blob_digests(raw)} <= store_blobs(state.driver)


def test_referrers_follow_their_subject(client, state):
    subject, subject_raw = push_image(client, "team/app", "v1", layer=b"subject")
    orphan_subject, _ = push_image(client, "team/app", None, layer=b"orphan")

    def referrer(of: str, raw_of: bytes, layer: bytes) -> str:
        raw = image_manifest(client, "team/app", layer=layer, artifactType="application/example",
                             subject={"mediaType": OCI_MANIFEST, "digest": of, "size": len(raw_of)})
        assert put_manifest(client, "team/app", digest_of(raw), raw).status_code == 201
        return digest_of(raw)

    kept = referrer(subject, subject_raw, b"sig-kept")
    orphan_raw = client.get(f"/v2/team/app/manifests/{orphan_subject}").data
    swept = referrer(orphan_subject, orphan_raw, b"sig-swept")
    report = collect(state, delete_untagged=True).report
    assert report.manifests_swept == 2  # the untagged subject and its referrer
    assert client.get(f"/v2/team/app/manifests/{kept}").status_code == 200
    assert client.get(f"/v2/team/app/manifests/{swept}").status_code == 404
    assert [d["digest"] for d in client.get(f"/v2/team/app/referrers/{subject}").get_json()["manifests"]] == [kept]
    assert client.get(f"/v2/team/app/referrers/{orphan_subject}").get_json()["manifests"] == []


def test_index_children_are_marked(client, state):
    children = [push_image(client, "team/multi", None, layer=f"arch-{i}".encode()) for i in range(2)]
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(r)}
                                      for d, r in children]}).encode()
    resp = put_manifest(client, "team/multi", "multi", index, "application/vnd.oci.image.index.v1+json")
    assert resp.status_code == 201
    report = collect(state, delete_untagged=True).report
    assert report.manifests_swept == report.blobs_swept == 0
    for digest, raw in children:
        assert client.get(f"/v2/team/multi/manifests/{digest}").data == raw


def test_recorded_use_keeps_an_old_unreferenced_blob(short):
    """Race (b): a client HEADs an old unreferenced blob, skips its upload,
    and names it in a manifest later; the HEAD's use record keeps it."""
    client, state = short
    used = push_blob(client, "team/app", b"old but about to be used")
    unused = push_blob(client, "team/app", b"old and forgotten")
    time.sleep(1.2)
    assert client.head(f"/v2/team/app/blobs/{used}").status_code == 200
    report = collect(state, grace=1.0).report
    assert report.blobs_swept == 1
    assert client.head(f"/v2/team/app/blobs/{used}").status_code == 200
    assert client.head(f"/v2/team/app/blobs/{unused}").status_code == 404


class _Hooked:
    """Delegates to a driver; calls ``hook(op, path)`` after each
    ``put_content`` and ``delete``."""

    def __init__(self, driver, hook):
        self._driver, self._hook = driver, hook
        self.name = driver.name

    def __getattr__(self, attr):
        return getattr(self._driver, attr)

    def put_content(self, path, data):
        self._driver.put_content(path, data)
        self._hook("put", path)

    def delete(self, path):
        self._driver.delete(path)
        self._hook("delete", path)


def test_use_recorded_while_condemned_restores_the_links(short):
    """A HEAD that finds the blob, then records its use while the collector
    condemns it (between steps a and c): the collector sees the use at step
    c and puts the links back; the HEAD answers 200, waiting for the
    collector to settle if its second look fell after step b."""
    client, state = short
    digest = push_blob(client, "team/app", b"condemned, then used")
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault(
        "status", client.head(f"/v2/team/app/blobs/{digest}").status_code))

    def hook(op: str, path: str) -> None:
        if op == "put" and path == paths.gc_condemned(digest) and not worker.is_alive():
            worker.start()
            deadline = time.monotonic() + 5
            while state.driver.stat(paths.gc_used(digest)).modtime < time.time() - 1:
                assert time.monotonic() < deadline, "the HEAD recorded no use"
                time.sleep(0.01)

    time.sleep(1.2)
    report = Collector(_Hooked(state.driver, hook), grace=1.0).run()
    worker.join(10)
    assert results == {"status": 200}
    assert report.kept_in_use == 1 and report.blobs_swept == 0
    assert client.get(f"/v2/team/app/blobs/{digest}").data == b"condemned, then used"
    assert not exists(state.driver, paths.gc_condemned(digest))


def test_request_meeting_a_condemned_blob_waits_for_the_outcome(short):
    """A HEAD that first looks after the links went (step b) waits until the
    collector settled, then answers from what is there: 404 here, and the
    client uploads the blob again."""
    client, state = short
    digest = push_blob(client, "team/app", b"condemned, unused")
    results = {}

    def head() -> None:
        results["status"] = client.head(f"/v2/team/app/blobs/{digest}").status_code
        results["marker_left"] = exists(state.driver, paths.gc_condemned(digest))

    worker = threading.Thread(target=head)

    def hook(op: str, path: str) -> None:
        if op == "delete" and path == paths.layer_link("team/app", digest):
            worker.start()
            time.sleep(0.3)  # the HEAD finds no link, sees the marker and waits

    time.sleep(1.2)
    report = Collector(_Hooked(state.driver, hook), grace=1.0).run()
    worker.join(10)
    assert results == {"status": 404, "marker_left": False}
    assert report.blobs_swept == 1
    push_blob(client, "team/app", b"condemned, unused")
    assert client.get(f"/v2/team/app/blobs/{digest}").data == b"condemned, unused"


def test_upload_of_a_swept_blob_stores_it_again(client, state):
    """The size cache must not make an upload skip bytes the collector removed."""
    digest = push_blob(client, "team/app", b"cached size")
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    collect(state)
    assert not exists(state.driver, paths.blob_data(digest))
    push_blob(client, "team/app", b"cached size")
    assert client.get(f"/v2/team/app/blobs/{digest}").data == b"cached size"


def test_dry_run_changes_nothing(client, state):
    gone, raw = push_image(client, "team/app", "v1", layer=b"dry")
    client.delete(f"/v2/team/app/manifests/{gone}")
    before = sorted(i.path for i in state.driver.walk("/v2"))
    report = collect(state, dry_run=True).report
    assert report.blobs_swept == 3 and report.bytes_reclaimed > 0
    assert sorted(i.path for i in state.driver.walk("/v2")) == before


def test_delete_events_for_what_is_swept(client, state):
    gone, raw = push_image(client, "team/app", None, layer=b"events")
    seen = []
    collect(state, delete_untagged=True, on_delete=lambda repo, digest: seen.append((repo, digest)))
    assert ("team/app", gone) in seen
    assert {("team/app", d) for d in blob_digests(raw)} <= set(seen)


def test_leftover_marker_of_a_crashed_run_is_resolved(client, state):
    digest = push_blob(client, "team/app", b"crash")
    link = paths.layer_link("team/app", digest)
    # A collector died between (b) and (d): marker written, link gone, bytes still there.
    state.driver.put_content(paths.gc_condemned(digest), json.dumps([[link, digest]]).encode())
    state.driver.delete(paths.layer_dir("team/app", digest))
    report = collect(state, grace=3600).report
    assert report.recovered_markers == 1
    assert client.head(f"/v2/team/app/blobs/{digest}").status_code == 200
    assert not exists(state.driver, paths.gc_condemned(digest))


def test_lease_lets_one_collector_run(state):
    first = Lease(state.driver, ttl=2.0)
    first.acquire()
    with pytest.raises(LeaseError, match="another garbage collection is running"):
        Lease(state.driver, ttl=2.0).acquire()
    first.release()
    second = Lease(state.driver, ttl=2.0)
    second.acquire()
    second.release()


def test_expired_lease_is_taken_over(state):
    crashed = Lease(state.driver, ttl=1.0)
    crashed.acquire()
    crashed._stop.set()  # stops renewing, as a crashed process would
    time.sleep(1.5)
    taker = Lease(state.driver, ttl=1.0)
    taker.acquire()
    assert taker.epoch == crashed.epoch + 1
    time.sleep(0.8)
    assert not crashed.valid()
    assert taker.valid()
    taker.release()


def test_scan_pauses_to_sweep_when_candidates_pile_up(client, state):
    """With more garbage than ``max_candidates``, the scan sweeps what it has
    and goes on: all of it goes, with bounded memory."""
    garbage = [push_blob(client, "team/app", f"garbage {i}".encode()) for i in range(40)]
    _, kept_raw = push_image(client, "team/app", "v1", layer=b"kept")
    collector = Collector(state.driver, grace=ALL_OLD, max_candidates=3, workers=2)
    report = collector.run()
    assert report.blobs_swept == 40
    assert not set(garbage) & store_blobs(state.driver)
    assert set(blob_digests(kept_raw)) <= store_blobs(state.driver)
