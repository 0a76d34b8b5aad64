"""cargohold.testing.services: backend processes for plugin tests."""

import os
import socket
import sys
import urllib.request

import pytest

from cargohold.testing.services import ServiceProcess, find_tool


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_start_stop_and_restart_on_the_same_port(tmp_path):
    with ServiceProcess("http.server", http_server) as service:
        port = service.port
        assert service.address == f"127.0.0.1:{port}"
        with urllib.request.urlopen(f"http://{service.address}/", timeout=5) as resp:
            assert resp.status == 200
        pid = service.proc.pid
        service.stop()
        assert not accepts(port)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        service.start()
        assert service.port == port and accepts(port)
    assert not accepts(port)


def test_a_process_that_exits_fails_start_with_its_log():
    service = ServiceProcess("broken", lambda port: [sys.executable, "-c", "print('no luck'); raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="broken exited with 3:\n.*no luck"):
        service.start()
    service.cleanup()


def test_find_tool(tmp_path, monkeypatch):
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.delenv("CARGOHOLD_TEST_TOOL", raising=False)
    assert find_tool("no-such-tool-here", "CARGOHOLD_TEST_TOOL", [str(tmp_path / "missing"), str(tool)]) == str(tool)
    monkeypatch.setenv("CARGOHOLD_TEST_TOOL", str(tool))
    assert find_tool("no-such-tool-here", "CARGOHOLD_TEST_TOOL") == str(tool)
    monkeypatch.delenv("CARGOHOLD_TEST_TOOL")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-here not found; run: install it"):
        find_tool("no-such-tool-here", "CARGOHOLD_TEST_TOOL", [str(tmp_path / "missing")], "run: install it")


def test_reference_registry_serves_and_collects_garbage(tmp_path):
    import hashlib

    import requests
    import yaml

    from cargohold.testing.services import ReferenceRegistry

    data = b"a blob no manifest refers to"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with ReferenceRegistry(root=tmp_path / "root", config={"log": {"level": "debug"}}) as reference:
        with open(reference.config_path) as f:
            config = yaml.safe_load(f)
        assert config["log"] == {"level": "debug", "accesslog": {"disabled": False}}
        assert config["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "root")}
        assert reference.cargohold_root == str(tmp_path / "root" / "docker" / "registry")
        assert requests.get(f"{reference.url}/v2/", timeout=10).status_code == 200
        started = requests.post(f"{reference.url}/v2/gc/app/blobs/uploads/", timeout=10)
        done = requests.put(started.headers["Location"], params={"digest": digest}, data=data, timeout=10)
        assert done.status_code == 201, done.text
        blob = f"{reference.url}/v2/gc/app/blobs/{digest}"
        assert os.path.isdir(os.path.join(reference.cargohold_root, "v2", "blobs", "sha256", digest[7:9]))

        output = reference.garbage_collect(dry_run=True)
        assert f"blob eligible for deletion: {digest}" in output
        assert requests.get(blob, timeout=10).content == data
        output = reference.garbage_collect(delete_untagged=True)
        assert "Deleting blob" in output and digest[7:] in output
        assert requests.get(blob, timeout=10).status_code == 404
    assert not accepts(reference.service.port)


def test_reference_registry_with_another_storage_driver():
    from cargohold.testing.services import ReferenceRegistry

    reference = ReferenceRegistry(config={"storage": {"inmemory": {}}})
    try:
        with open(reference.config_path) as f:
            text = f.read()
        assert "inmemory" in text and "filesystem" not in text
        reference.start()
        with urllib.request.urlopen(f"{reference.url}/v2/", timeout=5) as resp:
            assert resp.status == 200
    finally:
        reference.cleanup()
