"""Blob downloads from a real ``cargohold serve`` on filesystem storage:
plain HTTP (the kernel sends the file, ``sendfile``) and TLS (copied through
Python), full and ranged GETs and HEAD, byte for byte, with the bytes counted
in the metrics either way."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from cargohold.testing.server import LiveRegistry
from cargohold.testing.tls import make_test_ca

SIZE = (12 << 20) + 4321  # more than one sendfile step and one read block


@pytest.fixture(scope="module", params=["http", "tls"])
def live(request, tmp_path_factory):
    env, ca = {}, None
    if request.param == "tls":
        test_ca = make_test_ca(tmp_path_factory.mktemp("tls"))
        env = {"CARGOHOLD_HTTP_TLS_CERTIFICATE": test_ca.certificate, "CARGOHOLD_HTTP_TLS_KEY": test_ca.key}
        ca = test_ca.ca
    with LiveRegistry(env=env, tls_ca=ca) as registry:
        registry.session = requests.Session()
        registry.session.verify = ca or True
        registry.session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace the CA
        yield registry
        assert "Traceback" not in registry.log(), registry.log()


@pytest.fixture(scope="module")
def blob(live):
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    s = live.session
    start = s.post(f"{live.url}/v2/dl/blobs/uploads/", timeout=30)
    assert start.status_code == 202
    location = requests.compat.urljoin(live.url, start.headers["Location"])
    put = s.put(location, params={"digest": digest}, data=data, timeout=60)
    assert put.status_code == 201, put.text
    return data, f"{live.url}/v2/dl/blobs/{digest}"


def response_bytes(live) -> float:
    text = live.session.get(f"{live.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("cargohold_http_response_bytes_total") and 'route="v2.get_blob"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_whole_blob(live, blob):
    data, url = blob
    before = response_bytes(live)
    for _ in range(2):  # the second on the same kept-alive connection
        resp = live.session.get(url, timeout=60)
        assert resp.status_code == 200
        assert resp.headers["Content-Length"] == str(SIZE)
        assert resp.content == data
    assert response_bytes(live) - before == 2 * SIZE


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-0", 0, 0),
    ("bytes=10-", 10, SIZE - 1),
    ("bytes=-100", SIZE - 100, SIZE - 1),
    ("bytes=1048575-9437185", 1048575, 9437185),
    ("bytes=5-99999999", 5, SIZE - 1),
])
def test_ranges(live, blob, header, start, end):
    data, url = blob
    resp = live.session.get(url, headers={"Range": header}, timeout=60)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.content == data[start:end + 1]


def test_head_and_unsatisfiable_range(live, blob):
    _, url = blob
    head = live.session.head(url, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(SIZE) and head.content == b""
    bad = live.session.get(url, headers={"Range": f"bytes={SIZE}-"}, timeout=10)
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == f"bytes */{SIZE}"
    assert bad.json()["errors"][0]["code"]
    # The connection still serves the next download whole.
    assert live.session.get(url, timeout=60).content == blob[0]
