"""Retention runs against a real app (the installed plugin, in-memory
storage): dry runs, deletions and their events, the switches deletions
obey, the lease, and start-up checks."""

from __future__ import annotations

import json
import time

import pytest

from cargohold import hookimpl
from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.gc.lease import Lease, LeaseError
from cargohold.manifests import parse

from cargohold_policy_retention import run_scheduled, runner

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
RULES = [{"repositories": "team-a/*", "tags": "dev-*", "keep": 2},
         {"repositories": "*", "untagged": True, "olderthan": "0s"}]


class Events:
    """Records registry events."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def cargohold_registry_event(self, event):
        self.seen.append(event.to_dict())


def make_app(rules=RULES, deletes=True, **retention):
    config = {"storage": {"inmemory": {}, "delete": {"enabled": deletes}},
              "retention": {"rules": rules, **retention}}
    app = create_app(config=config, environ={})
    events = Events()
    app.extensions["cargohold"].pm.register(events, name="test-events")
    return app, events


def put(app, repository: str, tags: list[str], seed: str, media_type: str = OCI_MANIFEST, **doc) -> str:
    """Store a manifest (its blobs need not exist for retention) with tags;
    returns its digest.  Each call is a later push."""
    body = {"schemaVersion": 2, "mediaType": media_type, **doc}
    if media_type == OCI_MANIFEST:
        body.setdefault("config", {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": "sha256:" + seed.encode().hex().ljust(64, "0")[:64], "size": 2})
        body.setdefault("layers", [])
    manifest = parse(json.dumps(body).encode(), media_type)
    app.extensions["cargohold"].registry.manifests.put(repository, manifest, tags)
    time.sleep(0.002)  # distinct push times
    return manifest.digest


def tag_names(app, repository: str) -> list[str]:
    return app.extensions["cargohold"].registry.manifests.tags(repository)


def test_dry_run_lists_and_run_deletes_with_events():
    app, events = make_app()
    old = [put(app, "team-a/app", [f"dev-{i}"], f"dev{i}") for i in range(4)]
    release = put(app, "team-a/app", ["release-1"], "rel")
    other = put(app, "team-b/app", ["dev-0"], "other")
    orphan = put(app, "team-b/app", [], "orphan")

    report = runner.run(app, dry_run=True)
    assert [(d.repository, d.tag or d.digest, d.rule.index) for d in report.deletions] == [
        ("team-a/app", "dev-1", 0), ("team-a/app", "dev-0", 0),
        # Their manifests become untagged: the untagged rule takes them in the same run.
        ("team-a/app", old[0], 1), ("team-a/app", old[1], 1),
        ("team-b/app", orphan, 1),
    ]
    assert report.tags_kept == 4 and report.repositories == 2
    assert tag_names(app, "team-a/app") == ["dev-0", "dev-1", "dev-2", "dev-3", "release-1"]
    assert events.seen == []

    report = runner.run(app)
    assert (report.tags_deleted, report.manifests_deleted, report.skipped) == (2, 3, [])
    assert tag_names(app, "team-a/app") == ["dev-2", "dev-3", "release-1"]
    manifests = app.extensions["cargohold"].registry.manifests
    assert set(manifests.revisions("team-a/app")) == {old[2], old[3], release}
    assert set(manifests.revisions("team-b/app")) == {other}
    deletes = [(e["action"], e["target"]["repository"], e["target"].get("tag"), e["target"].get("digest"),
                e["request"]["useragent"]) for e in events.seen]
    assert deletes == [
        ("delete", "team-a/app", "dev-1", None, "cargohold-retention"),
        ("delete", "team-a/app", "dev-0", None, "cargohold-retention"),
        ("delete", "team-a/app", None, old[0], "cargohold-retention"),
        ("delete", "team-a/app", None, old[1], "cargohold-retention"),
        ("delete", "team-b/app", None, orphan, "cargohold-retention"),
    ]
    # Nothing left to do.
    assert runner.run(app).deletions == []


def test_index_children_and_referrers_of_kept_tags_stay():
    app, _ = make_app(rules=[{"repositories": "*", "untagged": True, "olderthan": "0s"}])
    child = put(app, "r", [], "amd64")
    index = put(app, "r", ["multi"], "index", media_type=OCI_INDEX,
                manifests=[{"mediaType": OCI_MANIFEST, "digest": child, "size": 10}])
    signature = put(app, "r", [], "sig", subject={"mediaType": OCI_INDEX, "digest": index, "size": 10},
                    artifactType="application/example.signature")
    stray = put(app, "r", [], "stray")
    report = runner.run(app)
    assert [d.digest for d in report.deletions] == [stray]
    assert set(app.extensions["cargohold"].registry.manifests.revisions("r")) == {child, index, signature}


def test_untagged_younger_than_olderthan_stay():
    app, _ = make_app(rules=[{"repositories": "*", "untagged": True, "olderthan": "1h"}])
    put(app, "r", [], "fresh")
    assert runner.run(app).deletions == []


def test_a_tag_pushed_again_after_selection_stays():
    app, _ = make_app(rules=[{"repositories": "*", "tags": "*", "keep": 0}])
    put(app, "r", ["v1"], "first")
    manifests = app.extensions["cargohold"].registry.manifests
    resolve = manifests.resolve_tag

    def pushed_meanwhile(name, tag):  # a client pushes v1 again between selection and deletion
        put(app, "r", ["v1"], "second")
        return resolve(name, tag)

    manifests.resolve_tag = pushed_meanwhile
    try:
        report = runner.run(app)
    finally:
        del manifests.resolve_tag
    assert report.deletions == [] and [d.tag for d in report.skipped] == ["v1"]
    assert tag_names(app, "r") == ["v1"]


def test_deletes_disabled_or_read_only_refuse_but_dry_run_lists():
    app, _ = make_app(deletes=False)
    put(app, "team-a/app", [], "orphan")
    with pytest.raises(ConfigError, match=r"deletes are disabled on this registry \(storage.delete.enabled\)"):
        runner.run(app)
    assert len(runner.run(app, dry_run=True).deletions) == 1

    app, _ = make_app()
    app.extensions["cargohold"].config["storage"]["maintenance"]["readonly"]["enabled"] = True
    with pytest.raises(ConfigError, match="read-only mode"):
        runner.run(app)
    assert run_scheduled(app) is None  # skipped, logged


def test_config_dryrun_makes_runs_dry():
    app, events = make_app(dryrun=True)
    put(app, "r", [], "orphan")
    report = run_scheduled(app)
    assert report.dry_run and len(report.deletions) == 1
    assert len(app.extensions["cargohold"].registry.manifests.revisions("r")) == 1
    assert events.seen == []


def test_one_run_at_a_time_and_gc_does_not_block_it():
    app, _ = make_app()
    put(app, "r", [], "orphan")
    driver = app.extensions["cargohold"].driver
    gc_lease = Lease(driver, ttl=5.0)
    gc_lease.acquire()
    try:
        other = Lease(driver, ttl=5.0, task=runner.LEASE_TASK, activity="retention run")
        other.acquire()
        try:
            with pytest.raises(LeaseError, match="another retention run is running"):
                runner.run(app)
            assert run_scheduled(app) is None
        finally:
            other.release()
        assert len(runner.run(app).deletions) == 1
    finally:
        gc_lease.release()


def test_scheduled_runs_in_several_workers_make_one_run_per_interval():
    app, _ = make_app()
    assert run_scheduled(app, 3600.0) is not None  # no run completed before
    put(app, "r", [], "orphan")
    assert run_scheduled(app, 3600.0) is None  # another worker's run was within the interval
    assert len(app.extensions["cargohold"].registry.manifests.revisions("r")) == 1
    time.sleep(0.05)
    assert len(run_scheduled(app, 0.01).deletions) == 1


def test_bad_rules_fail_start_up_naming_the_rule():
    with pytest.raises(ConfigError, match=r"retention.rules\[0\]: a tag rule needs"):
        make_app(rules=[{"repositories": "*", "tags": "*"}])
    with pytest.raises(ConfigError, match=r"retention.schedule: expected an age"):
        make_app(schedule="often")


def test_schedule_with_deletes_disabled_fails_start_up_unless_dry():
    with pytest.raises(ConfigError, match=r"retention.schedule: deletes are disabled"):
        make_app(deletes=False, schedule="1h")
    make_app(deletes=False, schedule="1h", dryrun=True)


def test_a_deleted_tag_leaves_its_manifest():
    app, _ = make_app(rules=[{"repositories": "*", "tags": "*", "keep": 1}])
    first = put(app, "r", ["a"], "a")
    put(app, "r", ["b"], "b")
    runner.run(app)
    client = app.test_client()
    assert client.get("/v2/r/manifests/a").status_code == 404
    assert client.get("/v2/r/manifests/b").status_code == 200
    # Without an untagged rule the manifest stays, reachable by digest.
    assert client.get(f"/v2/r/manifests/{first}").status_code == 200


class RefuseTag:
    """A delete policy, as the immutable-tag plugin is one: ``v1`` stays."""

    @hookimpl
    def cargohold_before_delete(self, repository, kind, reference, digest, tags):
        from cargohold.errors import Denied

        if "v1" in tags:
            raise Denied("v1 is protected")


def test_a_policy_refusing_a_delete_keeps_the_tag_and_its_manifest():
    app, events = make_app(rules=[{"repositories": "*", "tags": "*", "keep": 0},
                                  {"repositories": "*", "untagged": True, "olderthan": "0s"}])
    app.extensions["cargohold"].pm.register(RefuseTag(), name="refuse-v1")
    protected = put(app, "r", ["v1"], "first")
    put(app, "r", ["v2"], "second")

    dry = runner.run(app, dry_run=True)
    assert [(d.tag, message) for d, message in dry.refused] == [("v1", "v1 is protected")]
    assert protected not in [d.digest for d in dry.deletions]  # its tag stays, so does it
    report = runner.run(app)
    assert [d.tag for d in report.deletions if d.tag] == ["v2"]
    assert tag_names(app, "r") == ["v1"]
    assert report.as_dict()["refused"][0]["message"] == "v1 is protected"
    assert [e["target"].get("tag") for e in events.seen if e["target"].get("tag")] == ["v2"]
