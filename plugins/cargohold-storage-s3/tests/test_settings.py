"""Configuration: validation naming the key, environment overrides through
the core, the plugin's hooks, and the multipart part planner."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import cargohold_storage_s3 as plugin
from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold_storage_s3.layout import Piece
from cargohold_storage_s3.parts import plan
from cargohold_storage_s3.settings import parse_settings

MiB = 1 << 20
BASE = {"bucket": "registry", "region": "eu-west-1"}


def test_defaults():
    s = parse_settings(BASE)
    assert (s.bucket, s.region, s.endpoint_url, s.prefix) == ("registry", "eu-west-1", None, "")
    assert s.chunksize == 10 * MiB
    assert s.multipartcopychunksize == s.multipartcopythresholdsize == 32 * MiB
    assert s.multipartcopymaxconcurrency == 100
    assert s.redirectexpiry == 1200.0
    assert s.storageclass == "STANDARD"
    assert (s.encrypt, s.keyid, s.forcepathstyle, s.secure, s.skipverify) == (False, None, False, True, False)
    assert s.accesskey is None  # the default AWS credential chain


def test_raw_values_are_coerced():
    s = parse_settings({**BASE, "chunksize": "16MiB", "encrypt": "true", "redirectexpiry": "5m",
                        "multipartcopymaxconcurrency": "8", "rootdirectory": "/a/b/", "storageclass": "standard_ia",
                        "regionendpoint": "minio.local:9000", "secure": "false"})
    assert s.chunksize == 16 * MiB and s.encrypt is True and s.redirectexpiry == 300.0
    assert s.multipartcopymaxconcurrency == 8
    assert s.prefix == "a/b/"
    assert s.storageclass == "STANDARD_IA"
    assert s.endpoint_url == "http://minio.local:9000"
    assert "secret" not in repr(parse_settings({**BASE, "accesskey": "AK", "secretkey": "secret"}))


def test_region_defaults_with_an_endpoint():
    assert parse_settings({"bucket": "b-1", "regionendpoint": "https://s3.example.com"}).region == "us-east-1"


@pytest.mark.parametrize("params, key", [
    ({}, "storage.s3.bucket"),
    ({"bucket": "Bad_Bucket", "region": "x"}, "storage.s3.bucket"),
    ({"bucket": "ab", "region": "x"}, "storage.s3.bucket"),
    ({"bucket": "registry"}, "storage.s3.region"),
    ({**BASE, "region": "EU West"}, "storage.s3.region"),
    ({**BASE, "regionendpoint": "ftp://x"}, "storage.s3.regionendpoint"),
    ({**BASE, "regionendpoint": "http://x:99999"}, "storage.s3.regionendpoint"),
    ({**BASE, "regionendpoint": "http://x/path"}, "storage.s3.regionendpoint"),
    ({**BASE, "accesskey": "AK"}, "storage.s3.secretkey"),
    ({**BASE, "secretkey": "SK"}, "storage.s3.accesskey"),
    ({**BASE, "keyid": "k"}, "storage.s3.keyid"),
    ({**BASE, "v4auth": False}, "storage.s3.v4auth"),
    ({**BASE, "storageclass": "FAST"}, "storage.s3.storageclass"),
    ({**BASE, "chunksize": "1MiB"}, "storage.s3.chunksize"),
    ({**BASE, "chunksize": "6GiB"}, "storage.s3.chunksize"),
    ({**BASE, "chunksize": "lots"}, "storage.s3.chunksize"),
    ({**BASE, "multipartcopychunksize": 1000}, "storage.s3.multipartcopychunksize"),
    ({**BASE, "multipartcopythresholdsize": "10GiB"}, "storage.s3.multipartcopythresholdsize"),
    ({**BASE, "multipartcopymaxconcurrency": 0}, "storage.s3.multipartcopymaxconcurrency"),
    ({**BASE, "redirectexpiry": "30d"}, "storage.s3.redirectexpiry"),
    ({**BASE, "redirectexpiry": "200h"}, "storage.s3.redirectexpiry"),
    ({**BASE, "encrypt": "maybe"}, "storage.s3.encrypt"),
    ({**BASE, "rootdirectory": "/a b"}, "storage.s3.rootdirectory"),
    ({**BASE, "rootdirectory": "/a/../b"}, "storage.s3.rootdirectory"),
    ({**BASE, "maxretries": -1}, "storage.s3.maxretries"),
    ({**BASE, "connecttimeout": "0s"}, "storage.s3.connecttimeout"),
    ({**BASE, "bucketname": "x"}, "storage.s3.bucketname"),
])
def test_errors_name_the_key(params, key):
    with pytest.raises(ValueError) as info:
        parse_settings(params)
    assert key in str(info.value)


def test_startup_config_error_names_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CARGOHOLD_STORAGE", "s3")
    monkeypatch.setenv("CARGOHOLD_STORAGE_S3_BUCKET", "registry")
    monkeypatch.setenv("CARGOHOLD_STORAGE_S3_REGION", "us-east-1")
    monkeypatch.setenv("CARGOHOLD_STORAGE_S3_CHUNKSIZE", "tiny")
    with pytest.raises(ConfigError) as info:
        create_app()
    assert "storage.s3.chunksize" in str(info.value)
    assert "CARGOHOLD_STORAGE_S3_CHUNKSIZE" in str(info.value)


def test_app_on_s3_from_the_environment(monkeypatch, moto_server, bucket):
    monkeypatch.setenv("CARGOHOLD_STORAGE", "s3")
    for name, value in moto_server.registry_env(bucket, rootdirectory="/app").items():
        monkeypatch.setenv(name, value)
    app = create_app()
    client = app.test_client()
    resp = client.post("/v2/team/app/blobs/uploads/?digest=sha256:"
                       "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", data=b"hello")
    assert resp.status_code == 201, resp.data
    got = client.get("/v2/team/app/blobs/sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    assert got.status_code == 307  # redirects to a presigned URL by default
    assert got.headers["Location"].startswith(moto_server.endpoint)


def test_copying_requests_get_a_longer_read_timeout(moto_server, bucket):
    driver = plugin.S3Driver(parse_settings(moto_server.params(bucket, readtimeout="20s", connecttimeout="3s")))
    assert driver.client.meta.config.read_timeout == 20
    assert driver.slow_client.meta.config.read_timeout == 200
    assert driver.client.meta.config.connect_timeout == driver.slow_client.meta.config.connect_timeout == 3
    driver.close()


def test_missing_bucket_fails_startup(moto_server):
    with pytest.raises(ValueError, match="storage.s3.bucket: bucket 'not-created' does not exist"):
        plugin.create_driver(moto_server.params("not-created"))


def test_unreachable_backend_does_not_fail_startup(moto_server, bucket, caplog):
    from cargohold.testing.server import free_port

    params = moto_server.params(bucket, regionendpoint=f"http://127.0.0.1:{free_port()}", maxretries=0)
    driver = plugin.create_driver(params)
    assert "not reachable at start-up" in caplog.text
    driver.close()


def test_entry_point_and_hooks():
    (ep,) = [ep for ep in entry_points(group="cargohold") if ep.name == "storage-s3"]
    assert ep.load() is plugin
    assert plugin.cargohold_storage_drivers() == {"s3": plugin.create_driver}
    schema = plugin.cargohold_config_schema()["storage.s3"]
    for key in ("accesskey", "secretkey", "region", "regionendpoint", "forcepathstyle", "bucket", "encrypt",
                "keyid", "secure", "skipverify", "v4auth", "chunksize", "multipartcopychunksize",
                "multipartcopymaxconcurrency", "multipartcopythresholdsize", "rootdirectory", "storageclass"):
        assert key in schema, key


# -- the part planner ---------------------------------------------------------------------


def pieces(*sizes: int) -> list[Piece]:
    return [Piece(f"k{i}", size, "e", 0.0) for i, size in enumerate(sizes)]


def shape(parts):
    return [("copy" if p.copy else "buf", p.size) for p in parts]


def test_plan_copies_large_pieces():
    assert shape(plan(pieces(12 * MiB), copy_chunk=5 * MiB)) == [("copy", 5 * MiB), ("copy", 7 * MiB)]
    assert shape(plan(pieces(10 * MiB, 6 * MiB), copy_chunk=32 * MiB)) == [("copy", 10 * MiB), ("copy", 6 * MiB)]


def test_plan_merges_small_pieces_into_min_parts():
    parts = plan(pieces(*[MiB] * 11), copy_chunk=32 * MiB)
    assert shape(parts) == [("buf", 5 * MiB), ("buf", 5 * MiB), ("copy", MiB)]  # the last part may be small
    assert [len(p.ranges) for p in parts] == [5, 5, 1]


def test_plan_tops_up_then_copies_and_copies_a_small_last_piece():
    parts = plan(pieces(MiB, 20 * MiB, 100), copy_chunk=32 * MiB)
    assert shape(parts) == [("buf", 5 * MiB), ("copy", 16 * MiB), ("copy", 100)]
    assert [(r.piece.key, r.start, r.end) for r in parts[0].ranges] == [("k0", 0, MiB), ("k1", 0, 4 * MiB)]
    assert (parts[1].ranges[0].start, parts[1].ranges[0].end) == (4 * MiB, 20 * MiB)


def test_plan_covers_every_byte_in_order():
    sizes = [3 * MiB, 7, 9 * MiB + 1, MiB, 5 * MiB, 2, 40 * MiB + 3, 1]
    ranges = [r for p in plan(pieces(*sizes), copy_chunk=8 * MiB) for r in p.ranges]
    assert [(r.piece.key, r.start, r.end) for r in ranges] == sorted(
        (r.piece.key, r.start, r.end) for r in ranges)
    for i, size in enumerate(sizes):
        mine = [r for r in ranges if r.piece.key == f"k{i}"]
        assert mine[0].start == 0 and mine[-1].end == size
        assert all(a.end == b.start for a, b in zip(mine, mine[1:]))
    parts = plan(pieces(*sizes), copy_chunk=8 * MiB)
    assert all(p.size >= 5 * MiB for p in parts[:-1])
    assert all(p.size <= 5 * MiB for p in parts if not p.copy)
