"""Online garbage collection under load, on filesystem storage: concurrent
pushes (sharing base layers, reusing old unreferenced ones), deletes,
cross-repository copies with skopeo and ``cargohold gc --grace 5s`` in a
loop."""

from __future__ import annotations

from cargohold.testing.gc import GCSoak

from cargohold_storage_filesystem import FilesystemDriver


def test_gc_soak_filesystem(tmp_path):
    root = tmp_path / "store"
    soak = GCSoak({"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root)}, lambda: FilesystemDriver(str(root)),
                  tmp_path)
    soak.run()
    print(soak.summary)
