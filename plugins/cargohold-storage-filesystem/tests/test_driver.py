"""The storage suite against FilesystemDriver, plus filesystem specifics."""

import os
import time
from importlib.metadata import entry_points

import pytest

import cargohold_storage_filesystem as plugin
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import PathNotFound, StorageError
from cargohold.testing.storage import StorageDriverSuite
from cargohold_storage_filesystem import driver as driver_module
from cargohold_storage_filesystem.driver import TMP_DIR, FilesystemDriver


class TestFilesystemDriver(StorageDriverSuite):
    @pytest.fixture
    def driver(self, tmp_path):
        d = FilesystemDriver(str(tmp_path / "root"))
        yield d
        d.close()

    def test_layout_on_disk(self, store, tmp_path):
        store.put_content("/v2/blobs/data", b"x")
        assert (tmp_path / "root" / "v2" / "blobs" / "data").read_bytes() == b"x"
        store.delete("/v2")
        assert sorted(os.listdir(tmp_path / "root")) == [TMP_DIR]

    def test_temp_files_never_visible(self, store, tmp_path):
        w = store.writer("/dir/file")
        w.write(b"pending")
        assert len(os.listdir(tmp_path / "root" / TMP_DIR)) == 1
        assert store.list("/") == []
        assert list(store.walk("/")) == []
        store.put_content("/dir/other", b"x")
        assert store.list("/") == ["/dir"]
        assert [i.path for i in store.walk("/")] == ["/dir", "/dir/other"]
        w.cancel()
        assert os.listdir(tmp_path / "root" / TMP_DIR) == []
        store.delete("/dir")

    def test_uncommitted_writer_invisible_after_crash(self, store, tmp_path):
        w = store.writer("/crash/file")  # the process "dies" with it open
        w.write(b"half an upload")
        fresh = CheckedDriver(FilesystemDriver(str(tmp_path / "root")))
        with pytest.raises(PathNotFound):
            fresh.stat("/crash/file")
        assert fresh.list("/") == []
        w.cancel()

    def test_failed_rename_leaves_old_content_and_no_temp(self, store, tmp_path, monkeypatch):
        store.put_content("/f", b"old")

        def broken_replace(src, dst):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(driver_module.os, "replace", broken_replace)
        with pytest.raises(StorageError):
            store.put_content("/f", b"new")
        with store.writer("/f") as w:
            w.write(b"new")
            with pytest.raises(StorageError):
                w.commit()
        monkeypatch.undo()
        assert store.get_content("/f") == b"old"
        assert os.listdir(tmp_path / "root" / TMP_DIR) == []
        store.delete("/f")

    def test_fsync_calls(self, store, monkeypatch):
        calls = []
        real_fsync = os.fsync
        monkeypatch.setattr(driver_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
        store.put_content("/new/dir/file", b"x")
        assert len(calls) >= 3  # the file, the new directory's parent, the directory
        calls.clear()
        store.put_content("/new/dir/file", b"y")
        assert len(calls) == 2  # the file, its directory
        calls.clear()
        with store.writer("/new/dir/other") as w:
            w.write(b"z")
            w.commit()
        assert len(calls) == 2
        calls.clear()
        with store.writer("/new/dir/other", append=True) as w:
            w.write(b"z")
            w.commit()
        assert len(calls) == 1  # the file; its directory entry did not change
        calls.clear()
        store.move("/new/dir/other", "/new/moved")
        assert len(calls) == 2  # both directories
        store.delete("/new")

    def test_directory_fsyncs_are_batched_once_each(self, store, monkeypatch, tmp_path):
        synced = []
        real_fsync = os.fsync
        monkeypatch.setattr(driver_module.os, "fsync",
                            lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
        root = str(tmp_path / "root")
        store.put_content("/a/b/c/file", b"x")
        # The file first (before it is renamed into place), then every
        # directory that got an entry, once each, deepest first.
        assert synced[0].startswith(os.path.join(root, TMP_DIR))
        assert synced[1:] == [f"{root}/a/b/c", f"{root}/a/b", f"{root}/a", root]
        store.delete("/a")

    def test_volatile_writes_and_deletes_skip_fsync(self, store, monkeypatch, tmp_path):
        calls = []
        real_fsync = os.fsync
        monkeypatch.setattr(driver_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
        store.put_volatile("/v/dir/state", b"one")
        store.put_volatile("/v/dir/state", b"two")
        assert store.get_content("/v/dir/state") == b"two"
        assert os.listdir(tmp_path / "root" / TMP_DIR) == []
        store.delete_volatile("/v/dir")
        assert calls == []
        with pytest.raises(PathNotFound):
            store.stat("/v")

    def test_append_cancel_truncates_in_place(self, store, tmp_path):
        store.put_content("/a", b"base")
        w = store.writer("/a", append=True)
        w.write(b"x" * (3 << 20))  # past the write buffer: reaches the file
        assert (tmp_path / "root" / "a").stat().st_size > 4
        w.cancel()
        assert (tmp_path / "root" / "a").read_bytes() == b"base"
        store.delete("/a")

    def test_dropped_writer_is_cancelled(self, store, tmp_path):
        w = store.writer("/dropped")
        w.write(b"x")
        del w
        assert os.listdir(tmp_path / "root" / TMP_DIR) == []

    def test_empty_directory_is_not_listed(self, store, tmp_path):
        (tmp_path / "root" / "stale" / "dir").mkdir(parents=True)  # as after a crash
        with pytest.raises(PathNotFound):
            store.list("/stale/dir")
        os.removedirs(tmp_path / "root" / "stale" / "dir")

    def test_root_created_and_stale_temp_files_purged(self, tmp_path):
        root = tmp_path / "a" / "b"
        FilesystemDriver(str(root))
        assert (root / TMP_DIR).is_dir()
        old, new = root / TMP_DIR / "old", root / TMP_DIR / "new"
        old.write_bytes(b"x")
        new.write_bytes(b"x")
        (root / TMP_DIR / "trash" / "sub").mkdir(parents=True)
        past = time.time() - 2 * 24 * 3600
        os.utime(old, (past, past))
        FilesystemDriver(str(root))
        assert os.listdir(root / TMP_DIR) == ["new"]


class TestPlugin:
    def test_entry_point(self):
        (ep,) = [ep for ep in entry_points(group="cargohold") if ep.name == "storage-filesystem"]
        assert ep.load() is plugin

    def test_hooks(self, tmp_path):
        assert plugin.cargohold_config_schema() == {"storage.filesystem": {"rootdirectory": str}}
        factory = plugin.cargohold_storage_drivers()["filesystem"]
        driver = factory({"rootdirectory": str(tmp_path / "data")})
        assert driver.name == "filesystem"
        assert driver.root == str(tmp_path / "data")

    @pytest.mark.parametrize("params", [{}, {"rootdirectory": ""}, {"rootdirectory": None}])
    def test_factory_requires_rootdirectory(self, params):
        with pytest.raises(ValueError, match="storage.filesystem.rootdirectory"):
            plugin.create_driver(params)

    def test_factory_rejects_unusable_root(self, tmp_path):
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(ValueError, match="storage.filesystem.rootdirectory"):
            plugin.create_driver({"rootdirectory": str(tmp_path / "file" / "root")})

    def test_factory_rejects_unknown_keys(self, tmp_path):
        with pytest.raises(ValueError, match="storage.filesystem.maxthreads"):
            plugin.create_driver({"rootdirectory": str(tmp_path), "maxthreads": 4})


# -- the event loop keeps running while the disk is slow -------------------------

SLOW_DISK = """
import sys
from gevent import monkey; monkey.patch_all()
import os
import time
import gevent
from cargohold_storage_filesystem import driver as driver_module
from cargohold_storage_filesystem.driver import FilesystemDriver

blocking_sleep = monkey.get_original("time", "sleep")
real_fsync = os.fsync


def slow_fsync(fd):  # a disk busy with writeback: each fsync takes 0.2 s
    blocking_sleep(0.2)
    real_fsync(fd)


driver_module.os.fsync = slow_fsync
d = FilesystemDriver(sys.argv[1])
d.put_content("/seed/x", b"seed")
ticks = []


def ticker():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)


for name, call in [
    ("put_content", lambda: d.put_content("/tags/v1/link", b"sha256:" + b"a" * 64)),
    ("move", lambda: (d.put_content("/up/data", b"x"), ticks.__setitem__(slice(None), [time.monotonic()]),
                      d.move("/up/data", "/blobs/data"))),
    ("delete", lambda: d.delete("/seed")),
    ("commit", lambda: (w := d.writer("/new/file"), w.write(b"data"), w.commit())),
]:
    t = gevent.spawn(ticker)
    gevent.sleep(0)
    ticks[:] = [time.monotonic()]
    call()
    ticks.append(time.monotonic())
    t.kill()
    print(name, max(b - a for a, b in zip(ticks, ticks[1:])))
"""


def test_slow_fsyncs_do_not_stall_other_greenlets(tmp_path):
    # Under `cargohold serve` every request is a greenlet on one loop per
    # worker: an fsync on the loop (every tag, link and manifest write) would
    # stall all other requests of that worker for as long as the disk takes.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SLOW_DISK, str(tmp_path / "root")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    gaps = {op: float(gap) for op, gap in (line.split() for line in out.stdout.splitlines())}
    assert set(gaps) == {"put_content", "move", "delete", "commit"}, out.stdout
    for operation, gap in gaps.items():
        # A greenlet that ticks every 10 ms: its longest pause is ~0.2 s
        # when an fsync holds the loop, a few ms when the loop stays free.
        assert gap < 0.1, f"{operation}: the event loop stalled for {gap:.3f} s during an fsync ({gaps})"
