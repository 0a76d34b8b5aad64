"""Read-only mode on a live ``cargohold serve``, switched by editing the
configuration file and sending SIGHUP, with one process and with two
workers: skopeo pushes are refused with 405 UNSUPPORTED, pulls stay
byte-identical, a restarted worker keeps the reloaded mode, a file that no
longer validates leaves the running configuration in place, and upload
purging pauses while the registry is read-only."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
import requests
import yaml

from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

RELOADED = re.compile(r"\[(\d+)\] cargohold: configuration reloaded: read-only mode (on|off)")
REJECTED = "configuration reload failed; keeping the running configuration"


def write_config(path, readonly: bool, workers: int = 1, **maintenance) -> None:
    config = {
        "version": "0.1",
        "log": {"level": "info"},
        "http": {"workers": workers, "draintimeout": "5s"},
        "storage": {"maintenance": {"readonly": {"enabled": readonly}, **maintenance}},
    }
    path.write_text(yaml.safe_dump(config))


def wait_until(condition, timeout: float, message) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message() if callable(message) else message, pytrace=False)
        time.sleep(0.05)


def reload_states(registry: LiveRegistry) -> dict[int, str]:
    """Each process's last logged read-only state (``on``/``off``)."""
    return {int(pid): state for pid, state in RELOADED.findall(registry.log())}


def switch(registry: LiveRegistry, path, readonly: bool, workers: int) -> None:
    """Edit the file, send SIGHUP, and wait until every worker says so."""
    before = len(RELOADED.findall(registry.log()))
    write_config(path, readonly, workers)
    registry.reload()
    state = "on" if readonly else "off"

    def applied() -> bool:
        states = reload_states(registry)
        return (len(RELOADED.findall(registry.log())) >= before + workers
                and all(states.get(pid) == state for pid in registry.workers()))

    wait_until(applied, 15, lambda: f"read-only mode not switched {state} in every worker:\n{registry.log()}")


def start_uploads(registry: LiveRegistry, count: int = 24) -> list[requests.Response]:
    """``count`` upload starts at once, each on a fresh connection, so that
    every worker gets some."""
    responses: list[requests.Response] = []

    def post() -> None:
        responses.append(requests.post(f"{registry.url}/v2/ro/app/blobs/uploads/", timeout=30,
                                       headers={"Connection": "close"}))

    threads = [threading.Thread(target=post) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return responses


def assert_all_refused(responses: list[requests.Response]) -> None:
    for resp in responses:
        assert resp.status_code == 405, resp.text
        error = resp.json()["errors"][0]
        assert error["code"] == "UNSUPPORTED" and "read-only mode" in error["message"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_switches_read_only_mode_in_every_worker(tmp_path, workers):
    config = tmp_path / "config.yml"
    write_config(config, readonly=False, workers=workers)
    (tmp_path / "home").mkdir()
    with LiveRegistry(config_file=str(config), env={"CARGOHOLD_LOG_LEVEL": "info"}) as registry:
        assert len(registry.workers()) == workers
        skopeo = Skopeo(find_skopeo(), tmp_path / "home", registry)
        image = build_image(tmp_path / "src", "v1", layers=2, seed=f"readonly-{workers}")
        skopeo.copy(image.ref, skopeo.docker("ro/app", "v1"), "--preserve-digests")

        switch(registry, config, readonly=True, workers=workers)
        assert_all_refused(start_uploads(registry))
        refused = skopeo.run("copy", "--dest-tls-verify=false", image.ref, skopeo.docker("ro/app", "v2"),
                             check=False)
        assert refused.returncode != 0 and "read-only mode" in refused.stderr, refused.stderr
        skopeo.copy(skopeo.docker("ro/app", "v1"), f"oci:{tmp_path / 'pulled'}:v1", "--preserve-digests")
        assert tagged(tmp_path / "pulled", "v1")["digest"] == image.digest
        assert read_blobs(tmp_path / "pulled") == read_blobs(image.path)

        if workers > 1:
            # A worker started after the reload (here: replacing one that died) is read-only too.
            victim = min(registry.workers())
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(registry.workers()) == workers and victim not in registry.workers(), 15,
                       lambda: f"worker {victim} was not replaced:\n{registry.log()}")
            wait_until(lambda: all(reload_states(registry).get(pid) == "on" for pid in registry.workers()), 15,
                       lambda: f"the new worker did not apply the reloaded configuration:\n{registry.log()}")
            assert_all_refused(start_uploads(registry))

        # A file that no longer validates: logged, and the running configuration stays.
        config.write_text("storage:\n  maintenance:\n    readonly:\n      enabled: maybe\n")
        registry.reload()
        wait_until(lambda: REJECTED in registry.log(), 15, lambda: f"no reload error logged:\n{registry.log()}")
        assert "storage.maintenance.readonly.enabled: expected a boolean, got 'maybe'" in registry.log()
        assert registry.proc.poll() is None and registry.workers()
        assert_all_refused(start_uploads(registry))
        assert requests.get(f"{registry.url}/v2/ro/app/tags/list", timeout=10).json()["tags"] == ["v1"]

        switch(registry, config, readonly=False, workers=workers)
        skopeo.copy(image.ref, skopeo.docker("ro/app", "v2"), "--preserve-digests")
        tags = requests.get(f"{registry.url}/v2/ro/app/tags/list", timeout=10).json()["tags"]
        assert tags == ["v1", "v2"]
        assert all(resp.status_code == 202 for resp in start_uploads(registry, 4))


def test_upload_purging_pauses_while_read_only(tmp_path):
    config = tmp_path / "config.yml"
    purging = {"uploadpurging": {"enabled": True, "age": "3s", "interval": "0.5s", "dryrun": False}}
    write_config(config, readonly=False, **purging)
    with LiveRegistry(config_file=str(config), env={"CARGOHOLD_LOG_LEVEL": "info"}) as registry:
        resp = requests.post(f"{registry.url}/v2/ro/app/blobs/uploads/", timeout=10)
        assert resp.status_code == 202
        upload = registry.url + resp.headers["Location"]
        write_config(config, readonly=True, **purging)
        registry.reload()
        wait_until(lambda: reload_states(registry).get(registry.proc.pid) == "on", 2,
                   lambda: f"read-only mode not switched on:\n{registry.log()}")
        time.sleep(4)  # older than the purge age, with several purge intervals gone by
        assert registry.log().count("upload purging skipped: the registry is in read-only mode") >= 3
        assert requests.get(upload, timeout=10).status_code == 204

        write_config(config, readonly=False, **purging)
        registry.reload()
        wait_until(lambda: requests.get(upload, timeout=10).status_code == 404, 10,
                   lambda: f"the abandoned upload was not purged once read-only mode was off:\n{registry.log()}")
        assert "purged 1 upload session(s)" in registry.log()
