"""A failing storage backend answers 503 UNAVAILABLE, never a 500 with
internals, and a failure part-way through leaves nothing half-visible."""

from __future__ import annotations

import pytest

from cargohold import hookimpl
from cargohold.storage import paths
from cargohold.storage.driver import StorageDriver, StorageError
from cargohold.storage.inmemory import InMemoryDriver

from .helpers import ReportLog, digest_of, error_code, image_manifest, push_blob, push_image, put_manifest

SECRET = "/mnt/backend-7/secret-volume"


class Flaky(StorageDriver):
    """An in-memory driver whose operations named in ``failing`` raise
    ``error`` (``"*"`` fails them all).  Readers and writers fail on
    ``reader.read`` / ``writer.write`` / ``writer.commit``."""

    name = "flaky"

    def __init__(self):
        self.inner = InMemoryDriver()
        self.failing: set[str] = set()
        self.error: Exception = StorageError(f"backend unreachable at {SECRET}")

    def _check(self, op):
        if "*" in self.failing or op in self.failing:
            raise self.error

    def get_content(self, path):
        self._check("get_content")
        return self.inner.get_content(path)

    def put_content(self, path, data):
        self._check("put_content")
        return self.inner.put_content(path, data)

    def reader(self, path, offset=0):
        self._check("reader")
        return self.inner.reader(path, offset)

    def writer(self, path, append=False):
        self._check("writer")
        return _FlakyWriter(self, self.inner.writer(path, append))

    def stat(self, path):
        self._check("stat")
        return self.inner.stat(path)

    def list(self, path):
        self._check("list")
        return self.inner.list(path)

    def move(self, src, dst):
        self._check("move")
        return self.inner.move(src, dst)

    def delete(self, path):
        self._check("delete")
        return self.inner.delete(path)


class _FlakyWriter:
    def __init__(self, owner, writer):
        self.owner, self.writer = owner, writer

    def write(self, data):
        self.owner._check("writer.write")
        return self.writer.write(data)

    @property
    def size(self):
        return self.writer.size

    def commit(self):
        self.owner._check("writer.commit")
        return self.writer.commit()

    def cancel(self):
        return self.writer.cancel()

    def close(self):
        return self.writer.close()


class FlakyPlugin:
    name = "flaky-storage"

    def __init__(self):
        self.driver = Flaky()
        self.reports = []

    @hookimpl
    def cargohold_storage_drivers(self):
        return {"flaky": lambda params: self.driver}

    @hookimpl
    def cargohold_report_exception(self, error):
        self.reports.append(error)


@pytest.fixture
def flaky(make_app):
    plugin = FlakyPlugin()
    app = make_app({"storage": {"flaky": {}, "delete": {"enabled": True}}}, plugins=[plugin])
    return app.test_client(), plugin


def assert_unavailable(resp):
    assert resp.status_code == 503, resp.data
    if resp.request.method != "HEAD":
        assert error_code(resp) == "UNAVAILABLE"
    assert b"Traceback" not in resp.data and b"secret" not in resp.data and b"backend-7" not in resp.data


def _requests(client):
    """One request per kind of storage access, against seeded content."""
    digest, raw = push_image(client, "app", "v1")
    blob = digest_of(b"layer")
    upload = client.post("/v2/app/blobs/uploads/").headers["Location"]
    return [
        ("GET", f"/v2/app/manifests/v1", {}),
        ("HEAD", f"/v2/app/manifests/{digest}", {}),
        ("GET", f"/v2/app/blobs/{blob}", {}),
        ("HEAD", f"/v2/app/blobs/{blob}", {}),
        ("GET", "/v2/app/tags/list", {}),
        ("GET", "/v2/_catalog", {}),
        ("GET", f"/v2/app/referrers/{digest}", {}),
        ("POST", "/v2/app/blobs/uploads/", {}),
        ("POST", f"/v2/app/blobs/uploads/?digest={digest_of(b'new')}", {"data": b"new"}),
        ("PATCH", upload, {"data": b"chunk"}),
        ("GET", upload, {}),
        ("PUT", f"{upload}?digest={digest_of(b'')}", {}),
        ("DELETE", upload, {}),
        ("PUT", "/v2/app/manifests/v2", {"data": raw, "content_type": "application/vnd.oci.image.manifest.v1+json"}),
        ("DELETE", f"/v2/app/manifests/{digest}", {}),
        ("DELETE", f"/v2/app/blobs/{blob}", {}),
    ]


@pytest.mark.parametrize("error", [
    pytest.param(StorageError(f"backend unreachable at {SECRET}"), id="storage-error"),
    pytest.param(OSError(5, f"I/O error on {SECRET}"), id="foreign-oserror"),
    pytest.param(KeyError(SECRET), id="foreign-keyerror"),
])
def test_every_endpoint_answers_503_when_storage_fails(flaky, error):
    client, plugin = flaky
    requests = _requests(client)
    plugin.driver.error = error
    plugin.driver.failing = {"*"}
    for method, path, kw in requests:
        assert_unavailable(client.open(path, method=method, **kw))
    # Reporters see a StorageError naming the driver, whatever the driver raised.
    assert len(plugin.reports) == len(requests)
    assert all(isinstance(e, StorageError) and e.driver == "flaky" for e in plugin.reports)
    # Without storage, the base endpoint still answers.
    assert client.get("/v2/").status_code == 200


def test_failed_chunk_write_leaves_upload_as_it_was(flaky):
    client, plugin = flaky
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, data=b"first").status_code == 202

    plugin.driver.failing = {"writer.commit"}
    assert_unavailable(client.patch(location, data=b"second", headers={"Content-Range": "5-10"}))
    plugin.driver.failing = set()

    assert client.get(location).headers["Range"] == "0-4"
    assert client.patch(location, data=b"-rest", headers={"Content-Range": "5-9"}).status_code == 202
    resp = client.put(f"{location}?digest={digest_of(b'first-rest')}")
    assert resp.status_code == 201
    assert client.get(f"/v2/app/blobs/{digest_of(b'first-rest')}").data == b"first-rest"


def test_failed_move_leaves_no_blob_and_can_be_retried(flaky):
    client, plugin = flaky
    data = b"precious"
    digest = digest_of(data)
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, data=data).status_code == 202

    plugin.driver.failing = {"move"}
    assert_unavailable(client.put(f"{location}?digest={digest}"))
    plugin.driver.failing = set()

    assert client.head(f"/v2/app/blobs/{digest}").status_code == 404
    assert client.put(f"{location}?digest={digest}").status_code == 201
    assert client.get(f"/v2/app/blobs/{digest}").data == data


def test_failed_monolithic_upload_leaves_no_blob(flaky):
    client, plugin = flaky
    data = b"monolith"
    plugin.driver.failing = {"writer.write"}
    assert_unavailable(client.post(f"/v2/app/blobs/uploads/?digest={digest_of(data)}", data=data))
    plugin.driver.failing = set()
    assert client.head(f"/v2/app/blobs/{digest_of(data)}").status_code == 404
    assert push_blob(client, "app", data) == digest_of(data)


def test_failed_manifest_write_leaves_no_tag(flaky):
    client, plugin = flaky
    raw = image_manifest(client, "app")
    plugin.driver.failing = {"put_content"}
    assert_unavailable(put_manifest(client, "app", "v1", raw))
    plugin.driver.failing = set()
    assert client.get("/v2/app/manifests/v1").status_code == 404
    assert put_manifest(client, "app", "v1", raw).status_code == 201


def test_blob_data_removed_behind_a_cached_size_is_unknown_not_a_storage_failure(make_app):
    # Another process (a replica, a garbage collection) removed the bytes
    # after this one cached the blob's size: the blob is gone, not the backend.
    reports = ReportLog()
    app = make_app(plugins=[reports])
    client = app.test_client()
    blob = push_blob(client, "app", b"soon gone")
    assert client.get(f"/v2/app/blobs/{blob}").data == b"soon gone"  # size now cached
    app.extensions["cargohold"].driver.delete(paths.blob_data(blob))
    resp = client.get(f"/v2/app/blobs/{blob}")
    assert resp.status_code == 404 and error_code(resp) == "BLOB_UNKNOWN", resp.data
    assert reports.errors == []
