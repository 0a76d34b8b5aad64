"""The test kit as a plugin author meets it: pytest loads it from its entry
point, outside this repository, and its fixtures serve real registries.
Also the request-finished contract on a served request: body bytes counted
both ways."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cargohold.testing.client import RegistryResponseError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "contrib" / "example-plugin"


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest in ``directory``, a package's own tests: no ini file or
    conftest of this repository applies."""
    (directory / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=directory, capture_output=True, text=True, timeout=300)


def test_the_example_plugins_tests_pass_with_the_installed_kit(tmp_path):
    if importlib.util.find_spec("cargohold_size_limit") is None:
        pytest.fail("the example plugin is not installed: pip install -e contrib/example-plugin", pytrace=False)
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("2 passed"), done.stdout

    # The fixtures come from the kit's pytest11 entry point, nowhere else.
    without = run_pytest(tmp_path, "-p", "no:cargohold")
    assert without.returncode != 0 and "fixture 'cargohold_registry_client' not found" in without.stdout


def test_the_example_plugin_is_small():
    lines = sum(len(p.read_text().splitlines()) for p in (EXAMPLE / "cargohold_size_limit.py",
                                                          EXAMPLE / "tests" / "test_size_limit.py"))
    assert lines < 40


def test_a_third_party_storage_driver_runs_the_contract_suite(tmp_path):
    (tmp_path / "test_my_driver.py").write_text(
        "import pytest\n"
        "from cargohold.storage.inmemory import InMemoryDriver\n"
        "from cargohold.testing.plugin import StorageDriverSuite\n\n\n"
        "class TestMyDriver(StorageDriverSuite):\n"
        "    @pytest.fixture\n"
        "    def driver(self):\n"
        "        yield InMemoryDriver()\n"
    )
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = done.stdout.splitlines()[-1]
    assert "failed" not in summary and int(summary.split()[0]) >= 50, summary


RECORDER = """\
import importlib.util
import json
from cargohold import hookimpl


@hookimpl
def cargohold_request_finished(request_info, status, duration):
    with open({path!r}, "a") as f:
        f.write(json.dumps(dict(endpoint=request_info["endpoint"], method=request_info["method"], status=status,
                                bytes_in=request_info["bytes_in"], bytes_out=request_info["bytes_out"])) + "\\n")
"""


def finished_requests(path: Path, count: int) -> list[dict]:
    """The first ``count`` requests the recorder wrote (it writes after each
    response is sent, so they may lag the client a moment)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [r for r in map(json.loads, lines) if r["endpoint"] != "v2.base"]  # not the readiness probe
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} requests recorded")


def test_request_finished_counts_body_bytes_of_a_served_request(cargohold_serve, tmp_path):
    record = tmp_path / "finished.jsonl"
    live = cargohold_serve(plugins={"recorder": RECORDER.format(path=str(record))})
    client = live.client()
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = client.push_blob("kit/bytes", data)  # POST, then PUT with the body
    assert client.get_blob("kit/bytes", digest) == data

    requests = finished_requests(record, 3)
    start, put, get = [(r["method"], r["endpoint"], r["status"]) for r in requests[:3]]
    assert (start, put, get) == (("POST", "v2.start_upload", 202), ("PUT", "v2.finish_upload", 201),
                                 ("GET", "v2.get_blob", 200))
    # Counted once, by one counter: exactly the body, not twice it.
    assert requests[1]["bytes_in"] == len(data) and requests[1]["bytes_out"] == 0
    assert requests[2]["bytes_out"] == len(data) and requests[2]["bytes_in"] == 0
    assert requests[0]["bytes_in"] == 0


def test_the_kits_client_reports_refusals_with_the_spec_error(cargohold_live):
    client = cargohold_live.client()
    with pytest.raises(RegistryResponseError) as refused:
        client.pull_image("kit/none", "v1")
    assert (refused.value.status, refused.value.code) == (404, "MANIFEST_UNKNOWN")
    image = client.push_image("kit/app", "v1", layers=2, layer_size=4096)
    pulled = client.pull_image("kit/app", "v1")
    assert pulled.digest == image.digest and pulled.blobs == image.blobs


@pytest.mark.parametrize("page", ["README.md", "docs/plugins/writing-a-plugin.md"])
def test_the_docs_show_the_example_as_it_is(page):
    text = (REPO / page).read_text()
    for source in (EXAMPLE / "cargohold_size_limit.py", EXAMPLE / "tests" / "test_size_limit.py"):
        assert f"```python\n{source.read_text()}```" in text, f"{page} shows another {source.name}"
