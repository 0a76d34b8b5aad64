"""Retention end to end: images pushed with skopeo to a live ``cargohold
serve``, ``cargohold retention --dry-run`` then for real (delete events
reaching a webhook receiver), and scheduled runs inside the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from cargohold.testing.images import LayoutWriter, build_index
from cargohold.testing.notifications import EventReceiver
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

RULES = [{"repositories": "team-a/*", "tags": "dev-*", "keep": 2},
         {"repositories": "*", "untagged": True, "olderthan": "2s"}]


def retention(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    return subprocess.run([sys.executable, "-m", "cargohold", "retention", "--config", str(config), *args],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def tags_of(registry: LiveRegistry, repository: str) -> list[str]:
    resp = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["tags"] or []


def push_tags(skopeo: Skopeo, layout: Path, repository: str, tags: list[str]) -> dict[str, str]:
    """Push one distinct small image per tag, in order; returns tag -> digest."""
    writer = LayoutWriter(layout)
    digests = {}
    for tag in tags:
        image = writer.tag(f"{repository.replace('/', '-')}-{tag}", writer.image(layers=1, seed=f"{repository}/{tag}"))
        skopeo.copy(image.ref, skopeo.docker(repository, tag), "--preserve-digests")
        digests[tag] = image.digest
    return digests


def write_config(path: Path, root: Path, deletes: bool = True, **sections) -> Path:
    """A configuration file for ``root`` with ``sections`` (retention's by default)."""
    sections.setdefault("retention", {"rules": RULES})
    storage = {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": deletes}}
    path.write_text(yaml.safe_dump({"storage": storage, **sections}))
    return path


def test_cli_dry_run_lists_then_deletes_with_events(tmp_path):
    skopeo_binary = find_skopeo()
    root = tmp_path / "root"
    with EventReceiver() as receiver:
        endpoint = {"name": "ci", "url": receiver.url, "backoff": "100ms"}
        config = write_config(tmp_path / "config.yml", root, notifications={"endpoints": [endpoint]})
        with LiveRegistry(config_file=str(config), root=str(root)) as live:
            (tmp_path / "home").mkdir()
            skopeo = Skopeo(skopeo_binary, tmp_path / "home", live)
            layout = tmp_path / "layout"
            dev = push_tags(skopeo, layout, "team-a/app", ["dev-1", "dev-2", "dev-3", "dev-4"])
            release = push_tags(skopeo, layout, "team-a/app", ["release-1"])
            other = push_tags(skopeo, layout, "team-b/app", ["dev-1", "scratch"])
            multi = build_index(tmp_path / "multi", seed="retention")
            skopeo.copy(multi.ref, skopeo.docker("team-a/app", "multi"), "--all", "--preserve-digests")
            # An untagged manifest: its only tag deleted through the API.
            resp = requests.delete(f"{live.url}/v2/team-b/app/manifests/scratch", timeout=30)
            assert resp.status_code == 202
            time.sleep(2.5)  # older than the untagged rule's 2s

            expected = {("team-a/app", "dev-1"), ("team-a/app", "dev-2"),
                        ("team-a/app", dev["dev-1"]), ("team-a/app", dev["dev-2"]),
                        ("team-b/app", other["scratch"])}
            dry = retention(config, "--dry-run", "--json")
            assert dry.returncode == 0, dry.stderr
            report = json.loads(dry.stdout)
            assert report["dry_run"] is True
            assert {(d["repository"], d["tag"] or d["digest"]) for d in report["deletions"]} == expected
            reasons = {d["tag"]: d["reason"] for d in report["deletions"] if d["tag"]}
            assert reasons == {"dev-1": "rules[0]: keep 2 newest of dev-* in team-a/*",
                               "dev-2": "rules[0]: keep 2 newest of dev-* in team-a/*"}
            text = retention(config, "--dry-run")
            assert text.returncode == 0, text.stderr
            assert "would delete 2 tag(s) and 3 untagged manifest(s) in 2 repositor(ies)" in text.stderr
            lines = text.stdout.splitlines()
            assert lines[0].split() == ["REPOSITORY", "TAG", "OR", "DIGEST", "RULE"]
            assert {tuple(line.split()[:2]) for line in lines[1:]} == expected
            # Nothing went.
            assert tags_of(live, "team-a/app") == ["dev-1", "dev-2", "dev-3", "dev-4", "multi", "release-1"]
            skopeo.inspect(skopeo.docker("team-b/app", other["scratch"]), "--raw")

            proc = retention(config)
            assert proc.returncode == 0, proc.stderr
            assert "deleted 2 tag(s) and 3 untagged manifest(s)" in proc.stderr
            assert tags_of(live, "team-a/app") == ["dev-3", "dev-4", "multi", "release-1"]
            assert tags_of(live, "team-b/app") == ["dev-1"]
            for repository, reference in [("team-a/app", "dev-1"), ("team-a/app", dev["dev-1"]),
                                          ("team-b/app", other["scratch"])]:
                gone = skopeo.inspect(skopeo.docker(repository, reference), "--raw", check=False)
                assert gone.returncode != 0, f"{repository} {reference} is still there"
            # What was kept pulls completely (the index with every platform).
            for repository, tag, digest in [("team-a/app", "dev-4", dev["dev-4"]),
                                            ("team-a/app", "release-1", release["release-1"]),
                                            ("team-b/app", "dev-1", other["dev-1"])]:
                skopeo.copy(skopeo.docker(repository, tag), f"oci:{tmp_path / 'pulled'}:{tag}")
                assert skopeo.inspect_json(skopeo.docker(repository, tag), "--raw") is not None
                assert skopeo.inspect(skopeo.docker(repository, digest), "--raw").returncode == 0
            skopeo.copy(skopeo.docker("team-a/app", "multi"), f"oci:{tmp_path / 'pulled-multi'}:multi", "--all")

            # The CLI queued its delete events; the running registry delivers them.
            def retention_deletes(events) -> set:
                return {(e["target"]["repository"], e["target"].get("tag") or e["target"].get("digest"))
                        for e in events
                        if e["action"] == "delete" and e["request"].get("useragent") == "cargohold-retention"}

            events = receiver.wait_for(lambda evs: len(retention_deletes(evs)) >= len(expected))
            assert retention_deletes(events) == expected

            # A second run finds nothing more.
            again = retention(config, "--json")
            assert again.returncode == 0 and json.loads(again.stdout)["deletions"] == []


def test_cli_refuses_to_delete_when_deletes_are_disabled(tmp_path):
    config = write_config(tmp_path / "config.yml", tmp_path / "root", deletes=False)
    proc = retention(config)
    assert proc.returncode == 2
    assert "deletes are disabled on this registry (storage.delete.enabled)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert retention(config, "--dry-run").returncode == 0

    config.write_text(yaml.safe_dump({"retention": {"rules": [{"repositories": "*", "tags": "*"}]}}))
    proc = retention(config, "--dry-run")
    assert proc.returncode == 2
    assert "retention.rules[0]: a tag rule needs 'keep', 'olderthan' or both" in proc.stderr


def test_scheduled_runs_delete_in_a_live_server(tmp_path):
    skopeo_binary = find_skopeo()
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "retention": {"schedule": "1s", "rules": [{"repositories": "ci/*", "tags": "build-*", "keep": 1}]},
    }))
    env = {"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_HTTP_WORKERS": "2"}
    with LiveRegistry(config_file=str(config), env=env) as live:
        (tmp_path / "home").mkdir()
        skopeo = Skopeo(skopeo_binary, tmp_path / "home", live)
        layout = tmp_path / "layout"
        pushed = push_tags(skopeo, layout, "ci/app", ["build-1", "build-2", "build-3", "stable"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tags_of(live, "ci/app") != ["build-3", "stable"]:
            time.sleep(0.3)
        assert tags_of(live, "ci/app") == ["build-3", "stable"], live.log()
        skopeo.copy(skopeo.docker("ci/app", "build-3"), f"oci:{tmp_path / 'pulled'}:build-3")
        assert skopeo.inspect(skopeo.docker("ci/app", pushed["build-3"]), "--raw").returncode == 0
        log = Path(live.log_path).read_text(errors="replace")
        assert "retention deleted tag ci/app:build-1 (rules[0]: keep 1 newest of build-* in ci/*)" in log
        assert "scheduled retention failed" not in log and "Traceback" not in log


def test_push_times_written_by_the_reference_registry_order_the_tags(tmp_path):
    """A store the reference registry (distribution) filled: its tag links'
    modification times are the push times, re-pushes included."""
    from cargohold.testing.services import ReferenceRegistry

    skopeo_binary = find_skopeo()
    with ReferenceRegistry() as reference:
        (tmp_path / "home").mkdir()
        skopeo = Skopeo(skopeo_binary, tmp_path / "home", reference)
        pushed = push_tags(skopeo, tmp_path / "layout", "mig/app", ["t1", "t2", "t3"])
        time.sleep(0.05)
        writer = LayoutWriter(tmp_path / "again")
        again = writer.tag("t1", writer.image(layers=1, seed="t1 again"))
        skopeo.copy(again.ref, skopeo.docker("mig/app", "t1"), "--preserve-digests")  # t1 is newest now
        config = write_config(tmp_path / "config.yml", Path(reference.cargohold_root),
                              retention={"rules": [{"repositories": "mig/*", "tags": "t*", "keep": 2}]})
        dry = retention(config, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert [(d["tag"], d["digest"]) for d in json.loads(dry.stdout)["deletions"]] == [("t2", pushed["t2"])]
        proc = retention(config)
        assert proc.returncode == 0, proc.stderr
        # The reference registry serves the store as retention left it.
        resp = requests.get(f"{reference.url}/v2/mig/app/tags/list", timeout=30)
        assert sorted(resp.json()["tags"]) == ["t1", "t3"]
