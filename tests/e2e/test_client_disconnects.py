"""A client that stops sending its request body halfway is the client's
problem: a 400 with the spec's error body, nothing stored, the upload session
still usable, no traceback in the log and nothing handed to the error
reporters.  Raw sockets against a live server: each request declares more
body than it sends, then shuts down its write side."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from urllib.parse import urlsplit

import pytest
import requests

from cargohold.testing.server import LiveRegistry, exception_recorder

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports") / "reported.txt"
    with LiveRegistry(plugins={"recorder": exception_recorder(str(reports))}) as registry:
        registry.reports = reports
        yield registry
        # Checked after every test of the module ran against this server.
        log = registry.log()
        assert "Traceback" not in log and "unhandled error" not in log, log
        assert not reports.exists() or reports.read_text() == "", reports.read_text()


@pytest.fixture(autouse=True)
def clean_log_and_reports(live):
    yield
    log = live.log()
    assert "Traceback" not in log and "unhandled error" not in log, log
    assert not live.reports.exists() or live.reports.read_text() == "", live.reports.read_text()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cut_request(url: str, method: str, path: str, headers: dict, sent: bytes) -> tuple[int, dict, bytes]:
    """Send the request head and ``sent`` (less than the headers promise),
    shut down the write side and read the whole response."""
    u = urlsplit(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((u.hostname, u.port), timeout=15) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    resp_headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(resp_headers.get("content-length", len(body)))
    return int(status_line.split()[1]), resp_headers, body[:length]


def assert_spec_error(status: int, headers: dict, body: bytes, codes: tuple[str, ...]) -> dict:
    assert status == 400, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    error = doc["errors"][0]
    assert error["code"] in codes, doc
    assert error["message"], doc
    return error


def short_body(declared: int, sent: int) -> tuple[dict, bytes]:
    return {"Content-Length": str(declared), "Content-Type": "application/octet-stream"}, os.urandom(sent)


def start_upload(live) -> str:
    resp = requests.post(f"{live.url}/v2/cut/app/blobs/uploads/", timeout=10)
    assert resp.status_code == 202, resp.text
    return urlsplit(resp.headers["Location"]).path


def upload_size(live, location: str) -> int:
    resp = requests.get(live.url + location, timeout=10)
    assert resp.status_code == 204, resp.text
    return int(resp.headers["Range"].rpartition("-")[2]) + 1 if resp.headers["Range"] != "0-0" else 0


def test_monolithic_post_cut_short(live):
    whole = os.urandom(50_000)
    headers, _ = short_body(len(whole), 0)
    status, resp_headers, body = cut_request(
        live.url, "POST", f"/v2/cut/app/blobs/uploads/?digest={digest(whole)}", headers, whole[:10_000])
    error = assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    assert "50000" in error["message"] + json.dumps(error["detail"])
    # Nothing stored: the blob is unknown, and the full push still works.
    assert requests.head(f"{live.url}/v2/cut/app/blobs/{digest(whole)}", timeout=10).status_code == 404
    ok = requests.post(f"{live.url}/v2/cut/app/blobs/uploads/?digest={digest(whole)}", data=whole, timeout=10)
    assert ok.status_code == 201, ok.text


def test_monolithic_put_to_a_session_cut_short(live):
    whole = os.urandom(40_000)
    location = start_upload(live)
    headers, _ = short_body(len(whole), 0)
    status, resp_headers, body = cut_request(live.url, "PUT", f"{location}?digest={digest(whole)}", headers,
                                             whole[:1000])
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    assert requests.head(f"{live.url}/v2/cut/app/blobs/{digest(whole)}", timeout=10).status_code == 404
    # The session is still usable: the same PUT, complete, finishes it.
    assert upload_size(live, location) == 0
    ok = requests.put(f"{live.url}{location}?digest={digest(whole)}", data=whole, timeout=10)
    assert ok.status_code == 201, ok.text
    assert requests.get(f"{live.url}/v2/cut/app/blobs/{digest(whole)}", timeout=10).content == whole


def test_patch_cut_short_keeps_the_earlier_chunks(live):
    first, second = os.urandom(30_000), os.urandom(30_000)
    location = start_upload(live)
    resp = requests.patch(live.url + location, data=first, timeout=10,
                          headers={"Content-Range": f"0-{len(first) - 1}"})
    assert resp.status_code == 202, resp.text
    headers, _ = short_body(len(second), 0)
    headers["Content-Range"] = f"{len(first)}-{len(first) + len(second) - 1}"
    status, resp_headers, body = cut_request(live.url, "PATCH", location, headers, second[:5000])
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    # The cut chunk left no bytes behind; sending it again completes the blob.
    assert upload_size(live, location) == len(first)
    resp = requests.patch(live.url + location, data=second, timeout=10, headers=headers)
    assert resp.status_code == 202, resp.text
    whole = first + second
    ok = requests.put(f"{live.url}{location}?digest={digest(whole)}", timeout=10)
    assert ok.status_code == 201, ok.text
    assert requests.get(f"{live.url}/v2/cut/app/blobs/{digest(whole)}", timeout=10).content == whole


def test_chunked_patch_cut_mid_chunk(live):
    location = start_upload(live)
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"}
    sent = b"1000\r\n" + os.urandom(0x1000) + b"\r\n" + b"1000\r\n" + os.urandom(100)
    status, resp_headers, body = cut_request(live.url, "PATCH", location, headers, sent)
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    assert upload_size(live, location) == 0
    data = os.urandom(10_000)
    assert requests.patch(live.url + location, data=iter([data]), timeout=10).status_code == 202


def test_chunked_monolithic_put_cut_between_chunks(live):
    whole = os.urandom(0x2000)
    location = start_upload(live)
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"}
    status, resp_headers, body = cut_request(live.url, "PUT", f"{location}?digest={digest(whole)}", headers,
                                             b"1000\r\n" + whole[:0x1000] + b"\r\n")
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))
    assert requests.head(f"{live.url}/v2/cut/app/blobs/{digest(whole)}", timeout=10).status_code == 404


def _manifest(live) -> bytes:
    config = b'{"architecture":"amd64","os":"linux"}'
    assert requests.post(f"{live.url}/v2/cut/app/blobs/uploads/?digest={digest(config)}", data=config,
                         timeout=10).status_code == 201
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [], "annotations": {"pad": "x" * 5000},
    }).encode()


def test_manifest_put_cut_short(live):
    raw = _manifest(live)
    headers = {"Content-Length": str(len(raw)), "Content-Type": OCI_MANIFEST}
    status, resp_headers, body = cut_request(live.url, "PUT", "/v2/cut/app/manifests/cut", headers, raw[:2000])
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "MANIFEST_INVALID"))
    assert requests.get(f"{live.url}/v2/cut/app/manifests/cut", timeout=10).status_code == 404
    assert requests.get(f"{live.url}/v2/cut/app/manifests/{digest(raw)}", timeout=10).status_code == 404


def test_chunked_manifest_put_cut_off(live):
    raw = _manifest(live)
    headers = {"Transfer-Encoding": "chunked", "Content-Type": OCI_MANIFEST}
    sent = f"{len(raw):x}\r\n".encode() + raw[:1000]
    status, resp_headers, body = cut_request(live.url, "PUT", "/v2/cut/app/manifests/chunked", headers, sent)
    assert_spec_error(status, resp_headers, body, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID", "MANIFEST_INVALID"))
    assert requests.get(f"{live.url}/v2/cut/app/manifests/chunked", timeout=10).status_code == 404


def test_garbled_chunk_framing(live):
    location = start_upload(live)
    headers = {"Transfer-Encoding": "chunked", "Content-Type": "application/octet-stream"}
    status, resp_headers, body = cut_request(live.url, "PATCH", location, headers, b"zz\r\nabc\r\n0\r\n\r\n")
    assert_spec_error(status, resp_headers, body, ("BLOB_UPLOAD_INVALID", "SIZE_INVALID"))
    assert upload_size(live, location) == 0
