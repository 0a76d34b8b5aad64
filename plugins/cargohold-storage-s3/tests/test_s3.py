"""S3 specifics, against the moto server: how appended files are stored and
assembled, what travels through the registry, presigned redirects,
encryption and storage class headers, and a backend that is down."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest
import requests
from urllib3.exceptions import ProtocolError

from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import InvalidPath, PathNotFound, StorageError
from cargohold.testing.server import LiveRegistry
from cargohold.testing.storage import blob
from cargohold_storage_s3 import S3Driver, parse_settings

MiB = 1 << 20


class Requests:
    """Records every S3 operation a driver's client makes (name and
    parameters), through botocore's own event hooks on the real client."""

    def __init__(self, driver: S3Driver):
        self.calls: list[tuple[str, dict]] = []
        for client in (driver.client, driver.slow_client):
            client.meta.events.register("before-call.s3", self._record)

    def _record(self, model, params, **_):
        self.calls.append((model.name, params))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def get_bytes(self) -> int:
        """Bytes requested by ``GetObject`` calls (all ranged here)."""
        total = 0
        for name, params in self.calls:
            if name == "GetObject":
                first, _, last = params["headers"]["Range"].partition("=")[2].partition("-")
                total += int(last) - int(first) + 1
        return total

    def clear(self) -> None:
        self.calls.clear()


def keys_in_bucket(driver: S3Driver) -> list[str]:
    pages = driver.client.get_paginator("list_objects_v2").paginate(
        Bucket=driver.settings.bucket, Prefix=driver.settings.prefix)
    return [entry["Key"][len(driver.settings.prefix):] for page in pages for entry in page.get("Contents", ())]


def append_chunks(store, path: str, chunks: list[bytes]) -> None:
    """The upload flow: one append writer per chunk, each committed."""
    for i, chunk in enumerate(chunks):
        with store.writer(path, append=i > 0) as w:
            w.write(chunk)
            w.commit()


@pytest.fixture
def driver(make_driver):
    return make_driver()


@pytest.fixture
def store(driver):
    return CheckedDriver(driver)


# -- the segment layout ------------------------------------------------------------------


def test_segments_never_visible(driver, store):
    chunks = [b"base", b"one", b"two", b"three"]
    append_chunks(store, "/up/data", chunks)
    store.put_content("/up/startedat", b"x")
    keys = keys_in_bucket(driver)
    assert keys[0] == "up/data"
    assert len([k for k in keys if k.startswith("up/data!")]) == 3
    assert store.list("/up") == ["/up/data", "/up/startedat"]
    assert [(i.path, i.size) for i in store.walk("/")] == [("/up", 0), ("/up/data", 15), ("/up/startedat", 1)]
    assert store.stat("/up/data").size == 15
    assert store.get_content("/up/data") == b"baseonetwothree"
    with store.reader("/up/data", 6) as r:
        assert r.read() == b"etwothree"
    with pytest.raises(InvalidPath):
        store.stat("/up/data!x")  # no path can name a segment
    store.delete("/up/data")
    assert keys_in_bucket(driver) == ["up/startedat"]
    store.delete("/up")


def test_plain_files_cost_one_request_on_their_key(driver, store):
    """What the registry and the garbage collector do most (links, use
    records, manifests): no listing, whatever the bucket holds."""
    store.put_content("/d/link", b"sha256:abc")
    calls = Requests(driver)
    assert store.get_content("/d/link") == b"sha256:abc"
    assert calls.names() == ["GetObject"]
    calls.clear()
    assert store.stat("/d/link").size == 10
    assert calls.names() == ["HeadObject"]
    calls.clear()
    with pytest.raises(PathNotFound):
        store.get_content("/d/missing")
    assert calls.names() == ["GetObject"]
    calls.clear()
    store.delete("/d/link")
    assert calls.names() == ["HeadObject", "DeleteObject"]
    assert keys_in_bucket(driver) == []


def test_appending_to_a_put_file_marks_it_first(driver, store):
    store.put_content("/u/data", b"base")
    for chunk in (b"+one", b"+two"):
        with store.writer("/u/data", append=True) as w:
            w.write(chunk)
            w.commit()
    head = driver.client.head_object(Bucket=driver.settings.bucket, Key=driver.keys.key("/u/data"))
    assert head["Metadata"] == {"cargohold-appendable": "1"}
    assert store.get_content("/u/data") == b"base+one+two"
    assert store.stat("/u/data").size == 12
    with store.reader("/u/data", 5) as r:
        assert r.read() == b"one+two"
    store.move("/u/data", "/blob")  # the moved object is plain again
    head = driver.client.head_object(Bucket=driver.settings.bucket, Key=driver.keys.key("/blob"))
    assert head["Metadata"] == {}
    calls = Requests(driver)
    assert store.get_content("/blob") == b"base+one+two"
    assert calls.names() == ["GetObject"]
    store.delete("/blob")
    assert keys_in_bucket(driver) == []


def test_empty_append_adds_no_segment(driver, store):
    store.put_content("/f", b"abc")
    with store.writer("/f", append=True) as w:
        w.commit()
    assert keys_in_bucket(driver) == ["f"]
    store.delete("/f")


def test_replacing_an_appended_file_hides_its_old_segments(driver, store):
    append_chunks(store, "/f", [b"old base ", b"old tail"])
    store.put_content("/f", b"new")
    assert store.get_content("/f") == b"new"
    assert store.stat("/f").size == 3
    # The stale segment is cleaned up by the next append, which continues the new content.
    with store.writer("/f", append=True) as w:
        w.write(b" more")
        w.commit()
    assert store.get_content("/f") == b"new more"
    assert len(keys_in_bucket(driver)) == 2
    store.delete("/f")
    assert keys_in_bucket(driver) == []


def test_append_is_visible_to_another_driver_instance(make_driver):
    # Two processes sharing the bucket: the state is entirely in S3.
    a, b = CheckedDriver(make_driver()), CheckedDriver(make_driver())
    a.put_content("/shared/data", b"from a, ")
    with b.writer("/shared/data", append=True) as w:
        assert w.size == 8
        w.write(b"then b")
        w.commit()
    assert a.get_content("/shared/data") == b"from a, then b"
    a.move("/shared/data", "/shared/blob")
    assert b.get_content("/shared/blob") == b"from a, then b"
    b.delete("/shared")


# -- streaming writes ---------------------------------------------------------------------


def test_writer_streams_parts_while_writing(driver, store):
    calls = Requests(driver)
    data = blob(12 * MiB + 5, seed=7)
    w = store.writer("/big")
    for i in range(0, len(data), MiB):
        w.write(data[i:i + MiB])
    # Two 5 MiB parts are already in S3, the rest (2 MiB) is all that is buffered.
    assert calls.names() == ["CreateMultipartUpload", "UploadPart", "UploadPart"]
    assert len(driver.client.list_multipart_uploads(Bucket=driver.settings.bucket).get("Uploads", [])) == 1
    with pytest.raises(PathNotFound):
        store.stat("/big")
    w.commit()
    w.close()
    assert calls.names()[-2:] == ["UploadPart", "CompleteMultipartUpload"]
    assert store.get_content("/big") == data
    store.delete("/big")


def test_cancel_aborts_the_multipart_upload(driver, store):
    w = store.writer("/cancelled")
    w.write(blob(6 * MiB))
    uploads = driver.client.list_multipart_uploads(Bucket=driver.settings.bucket).get("Uploads", [])
    assert any(u["Key"].endswith("cancelled") for u in uploads)
    w.cancel()
    uploads = driver.client.list_multipart_uploads(Bucket=driver.settings.bucket).get("Uploads", [])
    assert not any(u["Key"].endswith("cancelled") for u in uploads)
    assert keys_in_bucket(driver) == []


def test_small_files_are_one_put_object(driver, store):
    calls = Requests(driver)
    store.put_content("/small", b"x" * 1000)
    with store.writer("/small2") as w:
        w.write(b"y" * (4 * MiB))
        w.commit()
    assert calls.names() == ["PutObject", "PutObject"]
    store.delete("/small")
    store.delete("/small2")


# -- move: server-side assembly ------------------------------------------------------------


def test_move_of_large_chunks_copies_server_side(driver, store):
    chunks = [blob(6 * MiB, seed=1), blob(7 * MiB + 3, seed=2), blob(11 * MiB, seed=3), blob(1000, seed=4)]
    append_chunks(store, "/up/data", chunks)
    calls = Requests(driver)
    store.move("/up/data", "/blobs/data")
    assert calls.count("GetObject") == 0, "no byte of the large chunks travels through the registry"
    assert calls.count("UploadPart") == 0
    # 6 MiB; 7 MiB+3; 11 MiB as 5 MiB + 6 MiB (no tail below 5 MiB); the
    # 1000 bytes at the end, copied too (the last part may be small).
    assert calls.count("UploadPartCopy") == 5
    assert calls.names()[-2:] == ["CompleteMultipartUpload", "DeleteObjects"]
    expected = b"".join(chunks)
    assert hashlib.sha256(store.get_content("/blobs/data")).digest() == hashlib.sha256(expected).digest()
    assert keys_in_bucket(driver) == ["blobs/data"]
    store.delete("/blobs")


def test_move_of_small_chunks_merges_them_in_bounded_buffers(driver, store):
    chunks = [blob(MiB, seed=i) for i in range(12)] + [blob(123, seed=99)]
    append_chunks(store, "/up/data", chunks)
    calls = Requests(driver)
    store.move("/up/data", "/blobs/data")
    total = sum(len(c) for c in chunks)
    # Every byte is read once (the segments are too small to copy) and sent
    # as parts of exactly 5 MiB, then the rest.
    assert calls.get_bytes() == total
    part_sizes = [params["body"].getbuffer().nbytes for name, params in calls.calls if name == "UploadPart"]
    assert part_sizes == [5 * MiB, 5 * MiB, 2 * MiB + 123]
    assert store.get_content("/blobs/data") == b"".join(chunks)
    store.delete("/blobs")


def test_move_tops_up_a_small_first_chunk_then_copies(driver, store):
    chunks = [blob(MiB, seed=1), blob(20 * MiB, seed=2)]
    append_chunks(store, "/up/data", chunks)
    calls = Requests(driver)
    store.move("/up/data", "/blobs/data")
    # 1 MiB + the first 4 MiB of the big segment are merged; the rest is copied.
    assert calls.get_bytes() == 5 * MiB
    assert calls.count("UploadPart") == 1
    assert calls.count("UploadPartCopy") >= 1
    assert store.get_content("/blobs/data") == b"".join(chunks)
    store.delete("/blobs")


def test_move_of_a_plain_object(driver, store):
    store.put_content("/a", b"small")
    with store.writer("/big") as w:
        w.write(blob(12 * MiB, seed=5))
        w.commit()
    calls = Requests(driver)
    store.move("/a", "/b")
    assert calls.names() == ["ListObjectsV2", "CopyObject", "DeleteObjects"]  # sources are mostly uploads
    calls.clear()
    store.move("/big", "/big2")  # above multipartcopythresholdsize: parallel part copies
    assert calls.count("UploadPartCopy") == 2
    assert calls.count("GetObject") == 0
    assert store.get_content("/big2") == blob(12 * MiB, seed=5)
    store.delete("/b")
    store.delete("/big2")


def test_failed_move_leaves_source_and_no_destination(driver, store, monkeypatch):
    append_chunks(store, "/up/data", [blob(6 * MiB, seed=1), blob(6 * MiB, seed=2)])
    real = driver.slow_client.upload_part_copy
    count = {"n": 0}

    def failing(**kwargs):
        count["n"] += 1
        if count["n"] == 2:
            raise OSError(104, "Connection reset by peer")
        return real(**kwargs)

    monkeypatch.setattr(driver.slow_client, "upload_part_copy", failing)
    with pytest.raises(StorageError):
        store.move("/up/data", "/blobs/data")
    monkeypatch.undo()
    with pytest.raises(PathNotFound):
        store.stat("/blobs/data")
    assert store.stat("/up/data").size == 12 * MiB
    assert driver.client.list_multipart_uploads(Bucket=driver.settings.bucket).get("Uploads", []) == []
    store.delete("/up")


# -- reads ---------------------------------------------------------------------------------


def test_reader_resumes_a_broken_body(driver, store):
    data = blob(3 * MiB, seed=21)
    store.put_content("/r", data)
    calls = Requests(driver)
    reader = driver.reader("/r")
    first = reader.read(MiB)
    body = reader._body
    real_read = body.read

    def broken(n=-1):
        body.read = real_read
        raise ProtocolError("Connection broken: IncompleteRead")

    body.read = broken
    rest = reader.read()
    reader.close()
    assert first + rest == data
    gets = [params["headers"]["Range"] for name, params in calls.calls if name == "GetObject"]
    assert gets == [f"bytes=0-{len(data) - 1}", f"bytes={MiB}-{len(data) - 1}"]
    store.delete("/r")


def test_reader_fails_when_the_file_was_replaced(driver, store):
    store.put_content("/r", blob(2 * MiB, seed=1))
    reader = store.reader("/r")
    store.put_content("/r", blob(2 * MiB, seed=2))
    with pytest.raises(StorageError, match="PreconditionFailed"):
        reader.read(10)
    reader.close()
    store.delete("/r")


# -- redirects ---------------------------------------------------------------------------------


def test_redirect_url_is_a_working_presigned_url(driver, store):
    data = blob(3 * MiB + 1, seed=11)
    store.put_content("/blob", data)
    url = store.redirect_url("/blob")
    assert url.startswith(driver.settings.endpoint_url) and "X-Amz-Signature=" in url
    assert "X-Amz-Expires=1200" in url  # the reference registry's 20 minutes
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200
    assert resp.content == data
    ranged = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    head = requests.head(store.redirect_url("/blob", "HEAD"), timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    store.delete("/blob")


def test_redirect_expiry_is_configurable(make_driver):
    store = CheckedDriver(make_driver(redirectexpiry="90s"))
    store.put_content("/blob", b"x")
    assert "X-Amz-Expires=90" in store.redirect_url("/blob")
    store.delete("/blob")


def test_no_redirect_for_a_file_with_segments(store):
    append_chunks(store, "/up", [b"a", b"b"])
    assert store.redirect_url("/up") is None
    with pytest.raises(PathNotFound):
        store.redirect_url("/missing")
    store.delete("/up")


# -- upload options -------------------------------------------------------------------------------


def test_encryption_and_storage_class_are_sent(make_driver):
    driver = make_driver(encrypt=True, storageclass="reduced_redundancy")
    store = CheckedDriver(driver)
    calls = Requests(driver)
    store.put_content("/enc", b"secret")
    with store.writer("/enc2") as w:
        w.write(blob(6 * MiB))
        w.commit()
    for name, params in calls.calls:
        if name in ("PutObject", "CreateMultipartUpload"):
            assert params["headers"]["x-amz-server-side-encryption"] == "AES256"
            assert params["headers"]["x-amz-storage-class"] == "REDUCED_REDUNDANCY"
    head = driver.client.head_object(Bucket=driver.settings.bucket, Key=driver.keys.key("/enc"))
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    store.delete("/enc")
    store.delete("/enc2")


def test_kms_key_and_no_storage_class(make_driver):
    driver = make_driver(encrypt=True, keyid="arn:aws:kms:us-east-1:123456789012:key/abc", storageclass="NONE")
    assert driver.upload_args == {"ServerSideEncryption": "aws:kms",
                                  "SSEKMSKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc"}


def test_root_directory_scopes_every_key(make_driver, moto_server, bucket):
    store = CheckedDriver(make_driver(rootdirectory="/one/root"))
    other = CheckedDriver(make_driver(rootdirectory="/two"))
    store.put_content("/v2/x", b"1")
    assert other.list("/") == []
    raw = moto_server.client().list_objects_v2(Bucket=bucket, Prefix="one/root/")["Contents"]
    assert [e["Key"] for e in raw] == ["one/root/v2/x"]
    store.delete("/v2")


# -- failures -----------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_backend_down_gives_storage_error_quickly(moto_server, bucket):
    params = moto_server.params(bucket, regionendpoint=f"http://127.0.0.1:{closed_port()}", maxretries=2,
                                connecttimeout="1s")
    store = CheckedDriver(S3Driver(parse_settings(params)))
    for call in (lambda: store.stat("/x"), lambda: store.get_content("/x"), lambda: store.put_content("/x", b"1"),
                 lambda: store.list("/"), lambda: store.delete("/x")):
        start = time.monotonic()
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, PathNotFound)
        assert "Could not connect" in str(info.value)
        assert info.value.driver == "s3"
        assert time.monotonic() - start < 10, "bounded retries with backoff, not an endless wait"
    store.close()


def test_unresponsive_backend_times_out(moto_server, bucket):
    # A server that accepts connections and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        params = moto_server.params(bucket, regionendpoint=f"http://127.0.0.1:{port}", maxretries=1,
                                    readtimeout="0.5s")
        store = CheckedDriver(S3Driver(parse_settings(params)))
        start = time.monotonic()
        with pytest.raises(StorageError, match="timeout"):
            store.stat("/x")
        assert time.monotonic() - start < 10
        store.close()


def test_backend_stopped_and_restarted(moto_backend):
    driver = CheckedDriver(moto_backend.make_driver())
    driver.put_content("/before", b"x")
    moto_backend.stop()
    try:
        w = driver.writer("/during")
        w.write(b"data")
        with pytest.raises(StorageError):
            w.commit()
        w.close()
        with pytest.raises(StorageError):
            driver.stat("/before")
    finally:
        moto_backend.start()
    # moto lost everything; the same driver works again without a restart.
    driver.put_content("/after", b"y")
    assert driver.get_content("/after") == b"y"
    driver.delete("/after")
    driver.close()


def test_missing_bucket_is_storage_error(moto_server, bucket):
    store = CheckedDriver(S3Driver(parse_settings(moto_server.params("no-such-bucket-here"))))
    with pytest.raises(StorageError, match="NoSuchBucket") as info:
        store.stat("/x")
    assert not isinstance(info.value, PathNotFound)
    store.close()


def test_requests_waiting_on_s3_do_not_block_the_server(moto_server, bucket):
    """Under ``cargohold serve`` (gevent) a request stuck on S3 yields: the
    same single worker keeps answering other requests meanwhile."""
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        env = moto_server.registry_env(bucket, regionendpoint=f"http://127.0.0.1:{silent.getsockname()[1]}",
                                       readtimeout="4s", maxretries=0)
        env["CARGOHOLD_HTTP_WORKERS"] = "1"
        with LiveRegistry(env=env) as registry:
            stuck = []

            def pull() -> None:
                digest = "sha256:" + "a" * 64
                stuck.append(requests.get(f"{registry.url}/v2/some/repo/blobs/{digest}", timeout=30))

            threads = [threading.Thread(target=pull) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.5)  # the pulls are now waiting on S3
            start = time.monotonic()
            resp = requests.get(f"{registry.url}/v2/", timeout=30)
            elapsed = time.monotonic() - start
            for t in threads:
                t.join()
            assert resp.status_code == 200
            assert elapsed < 2, f"/v2/ took {elapsed:.1f}s while other requests waited on S3"
            assert [r.status_code for r in stuck] == [503, 503, 503]
            assert all(r.json()["errors"][0]["code"] == "UNAVAILABLE" for r in stuck)
