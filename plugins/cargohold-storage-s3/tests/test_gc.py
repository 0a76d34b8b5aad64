"""Online garbage collection on S3 (a moto server): the soak test of
:mod:`cargohold.testing.gc`, on a bucket of its own."""

from __future__ import annotations

from cargohold.testing.gc import GCSoak
from cargohold.testing.skopeo import Skopeo, find_skopeo


def test_gc_soak_s3(bucket_backend, tmp_path):
    backend = bucket_backend
    binary = find_skopeo()

    def skopeo(registry) -> Skopeo:
        home = tmp_path / "skopeo-home"
        home.mkdir(exist_ok=True)
        return Skopeo(binary, home, registry)

    soak = GCSoak(backend.env, backend.make_driver, tmp_path, skopeo=skopeo)
    soak.run()
    print(soak.summary)
