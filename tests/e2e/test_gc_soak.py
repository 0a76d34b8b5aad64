"""Online garbage collection under load, on filesystem storage: concurrent
pushes (sharing base layers, reusing old unreferenced ones), deletes,
cross-repository copies and ``cargohold gc --grace 5s`` in a loop."""

from __future__ import annotations

from cargohold.testing.gc import soak

from cargohold_storage_filesystem import FilesystemDriver


def test_gc_soak_filesystem(tmp_path):
    root = tmp_path / "store"
    env = {"CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root)}
    print(soak(env, lambda: FilesystemDriver(str(root)), tmp_path))
