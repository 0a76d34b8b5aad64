"""Online garbage collection on S3 (a moto server): the soak test of
:mod:`cargohold.testing.gc`, on a bucket of its own."""

from __future__ import annotations

from cargohold.testing.gc import soak


def test_gc_soak_s3(bucket_backend, tmp_path):
    print(soak(bucket_backend.env, bucket_backend.make_driver, tmp_path))
