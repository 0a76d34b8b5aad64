"""``cargohold gc`` and scheduled collection against live ``cargohold serve``
processes: reports, delete events through the notification system, logs and
``/metrics``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import requests
import yaml

from cargohold.storage import paths
from cargohold.testing.notifications import EventReceiver
from cargohold.testing.server import LiveRegistry

GRACE_ENV = {"CARGOHOLD_STORAGE_MAINTENANCE_GC_GRACE": "1s"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(url: str, repo: str, tag: str, seed: str) -> tuple[str, list[str]]:
    """Push a config and two layers and a manifest naming them; returns the
    manifest digest and the blob digests."""
    blobs = [json.dumps({"seed": seed}).encode(), f"layer-1-{seed}".encode() * 300, f"layer-2-{seed}".encode() * 500]
    digests = []
    for data in blobs:
        digest = digest_of(data)
        resp = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data, timeout=30)
        assert resp.status_code == 201, resp.text
        digests.append(digest)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0],
                   "size": len(blobs[0])},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(b)}
                   for d, b in zip(digests[1:], blobs[1:])],
    }).encode()
    resp = requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST},
                        timeout=30)
    assert resp.status_code == 201, resp.text
    return digest_of(manifest), digests


def run_gc(config: str | None, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cargohold", "gc", *args]
    if config:
        cmd += ["--config", config]
    return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_cli_sweeps_a_deleted_image_and_sends_delete_events(tmp_path):
    root = tmp_path / "root"
    config = tmp_path / "config.yml"
    with EventReceiver() as receiver:
        config.write_text(yaml.safe_dump({
            "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
            "notifications": {"endpoints": [{"name": "ci", "url": receiver.url, "backoff": "100ms"}]},
        }))
        with LiveRegistry(config_file=str(config), root=str(root), env=GRACE_ENV) as live:
            kept, kept_blobs = push_image(live.url, "team/app", "v1", "kept")
            gone, gone_blobs = push_image(live.url, "team/app", "v2", "gone")
            assert requests.delete(f"{live.url}/v2/team/app/manifests/{gone}", timeout=30).status_code == 202
            time.sleep(1.5)

            dry = run_gc(str(config), GRACE_ENV, "--dry-run", "--json")
            assert dry.returncode == 0, dry.stderr
            assert json.loads(dry.stdout)["blobs_swept"] == 4  # the manifest, its config and layers
            assert (root / paths.blob_data(gone).lstrip("/")).exists()

            proc = run_gc(str(config), GRACE_ENV)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith("swept 4 blobs"), proc.stdout
            for digest in [gone, *gone_blobs]:
                assert not (root / paths.blob_data(digest).lstrip("/")).exists()
            for digest in kept_blobs:
                got = requests.get(f"{live.url}/v2/team/app/blobs/{digest}", timeout=30)
                assert got.status_code == 200
            # The collector queued its events; the running registry delivers them.
            def collector_deletes(events) -> set:
                return {(e["target"]["repository"], e["target"].get("digest")) for e in events
                        if e["action"] == "delete" and e["request"].get("useragent") == "cargohold-gc"}

            # (The DELETE request's own event arrives too: count the collector's.)
            events = receiver.wait_for(lambda evs: len(collector_deletes(evs)) >= len(gone_blobs))
            assert collector_deletes(events) == {("team/app", d) for d in gone_blobs}


def test_cli_refuses_a_grace_below_the_configured_one(tmp_path):
    env = {"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path)}
    proc = run_gc(None, env, "--grace", "10m")
    assert proc.returncode == 2
    assert "below storage.maintenance.gc.grace (3600s)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_scheduled_collection_logs_and_metrics(tmp_path):
    env = {**GRACE_ENV, "CARGOHOLD_STORAGE_MAINTENANCE_GC_ENABLED": "true",
           "CARGOHOLD_STORAGE_MAINTENANCE_GC_INTERVAL": "2s", "CARGOHOLD_LOG_LEVEL": "info"}
    with LiveRegistry(env=env) as live:
        gone, blobs = push_image(live.url, "team/app", "v1", "scheduled")
        assert requests.delete(f"{live.url}/v2/team/app/manifests/{gone}", timeout=30).status_code == 202
        stored = [os.path.join(live.root, paths.blob_data(d).lstrip("/")) for d in [gone, *blobs]]
        deadline = time.monotonic() + 30
        reclaimed = 0.0
        while time.monotonic() < deadline:
            text = requests.get(f"{live.url}/metrics", timeout=30).text
            for line in text.splitlines():
                if line.startswith("cargohold_gc_last_run_reclaimed_bytes "):
                    reclaimed = max(reclaimed, float(line.split()[1]))
            if reclaimed > 0 and not any(os.path.exists(p) for p in stored):
                break
            time.sleep(0.5)
        assert reclaimed > 0, f"no collection reclaimed anything:\n{live.log()}"
        assert not any(os.path.exists(p) for p in stored), f"blobs of the deleted image remain:\n{live.log()}"
        assert 'cargohold_gc_runs_total{outcome="completed"}' in text
        assert "cargohold_gc_last_run_duration_seconds" in text
        assert "garbage collection swept" in live.log()


def test_progress_bars_on_a_terminal(tmp_path):
    """On a terminal, ``cargohold gc`` draws one progress bar per phase (on
    stderr); the report still goes to stdout."""
    import pty

    env = {"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "root"), **GRACE_ENV}
    with LiveRegistry(env=env, root=str(tmp_path / "root")) as live:
        gone, _ = push_image(live.url, "team/app", "v1", "tty")
        requests.delete(f"{live.url}/v2/team/app/manifests/{gone}", timeout=30)
    time.sleep(1.5)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "cargohold", "gc"], env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, timeout=120)
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"swept 4 blobs")
    lines = [line.rpartition(b"\r")[2] for line in drawn.splitlines()]
    for phase in (b"mark", b"scan", b"links", b"blobs"):
        assert any(line.startswith(phase) and b"[" + b"#" * 30 + b"]" in line for line in lines), drawn
