"""The one test suite every storage driver runs against itself.

Subclass :class:`StorageDriverSuite` in the driver's tests and provide a
``driver`` fixture that yields a fresh driver over an empty store::

    from cargohold.testing.storage import StorageDriverSuite

    class TestFilesystemDriver(StorageDriverSuite):
        @pytest.fixture
        def driver(self, tmp_path):
            d = FilesystemDriver(str(tmp_path / "root"))
            yield d
            d.close()

Each test deletes what it created, and the suite fails a test that left
anything under ``/`` (a driver whose delete leaves directories or files
behind).  Most tests go through :class:`CheckedDriver`, as the core does;
those about errors also run against the raw driver (``any_store``), since the
wrapper would hide a driver that leaks foreign exceptions.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import (
    FileExists,
    FileInfo,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
)

MiB = 1 << 20

BAD_PATHS = [
    "", "relative", "a/b", "/a/../b", "/a/./b", "/..", "/.", "/a//b", "//", "/a/",
    "/a/b c", "/a\n", "/a/b~", "/caf\u00e9", "/a\\b", None, b"/a", 7,
]


def blob(size: int, seed: int = 0) -> bytes:
    """``size`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def run_threads(target, count: int) -> None:
    """Run ``target(i)`` in ``count`` threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class _Spy:
    """Delegates to a driver and records which methods were called."""

    def __init__(self, driver: StorageDriver):
        self._driver = driver
        self.name = driver.name
        self.calls: list[str] = []

    def __getattr__(self, attr):
        target = getattr(self._driver, attr)

        def call(*args, **kwargs):
            self.calls.append(attr)
            return target(*args, **kwargs)

        return call


class StorageDriverSuite:
    """The storage driver contract (:mod:`cargohold.storage.driver`) as tests.

    Subclasses provide a ``driver`` fixture yielding a fresh driver over an
    empty store.  ``store`` is that driver wrapped in :class:`CheckedDriver`;
    ``any_store`` runs a test once wrapped and once raw.
    """

    @pytest.fixture
    def driver(self):
        raise NotImplementedError(f"{type(self).__name__} must define a `driver` fixture")

    @pytest.fixture
    def store(self, driver, request):
        failed_before = request.session.testsfailed
        yield CheckedDriver(driver)
        leftovers = driver.list("/")
        for path in leftovers:
            driver.delete(path)
        # Report leftovers only for tests that passed: a failing test already
        # says what went wrong.
        if request.session.testsfailed == failed_before:
            assert leftovers == [], f"left behind under '/': {leftovers}"

    @pytest.fixture(params=["checked", "raw"])
    def any_store(self, request, store):
        return store if request.param == "checked" else store.driver

    # -- get_content / put_content -------------------------------------------

    @pytest.mark.parametrize("size", [0, 1, 4096 + 7, 256 * 1024])
    def test_put_get_roundtrip(self, any_store, size):
        data = blob(size, seed=size)
        any_store.put_content("/roundtrip/file", data)
        assert any_store.get_content("/roundtrip/file") == data
        assert any_store.stat("/roundtrip/file").size == size
        any_store.delete("/roundtrip")

    def test_put_get_large(self, store):
        data = blob(5 * MiB + 3)
        store.put_content("/large/blob", data)
        assert store.get_content("/large/blob") == data
        store.delete("/large/blob")

    def test_put_get_binary(self, store):
        data = bytes(range(256)) * 16 + b"\r\n\x00\r\x1a\xff"
        store.put_content("/binary", data)
        assert store.get_content("/binary") == data
        store.delete("/binary")

    def test_put_overwrites(self, store):
        store.put_content("/over/file", b"a fairly long first content")
        store.put_content("/over/file", b"short")
        assert store.get_content("/over/file") == b"short"
        assert store.stat("/over/file").size == 5
        store.put_content("/over/file", b"now longer than before, again")
        assert store.get_content("/over/file") == b"now longer than before, again"
        store.delete("/over/file")

    def test_get_missing(self, any_store):
        with pytest.raises(PathNotFound):
            any_store.get_content("/missing")
        with pytest.raises(PathNotFound):
            any_store.get_content("/missing/deeper/file")
        any_store.put_content("/present/file", b"x")
        with pytest.raises(PathNotFound):
            any_store.get_content("/present/other")
        with pytest.raises(PathNotFound):
            any_store.get_content("/present")  # a directory, not a file
        any_store.delete("/present/file")

    # -- reader ---------------------------------------------------------------

    def test_reader_offsets(self, any_store):
        data = blob(1000)
        any_store.put_content("/reader/file", data)
        for offset in (0, 1, 400, 999, 1000):
            with any_store.reader("/reader/file", offset) as r:
                assert r.read(5000) == data[offset:]
                assert r.read(10) == b""
        any_store.delete("/reader/file")

    def test_reader_offset_beyond_end(self, any_store):
        any_store.put_content("/reader/file", b"12345")
        with pytest.raises(InvalidOffset):
            any_store.reader("/reader/file", 6)
        with pytest.raises(InvalidOffset):
            any_store.reader("/reader/file", 1 << 40)
        any_store.put_content("/reader/empty", b"")
        with any_store.reader("/reader/empty", 0) as r:
            assert r.read(10) == b""
        with pytest.raises(InvalidOffset):
            any_store.reader("/reader/empty", 1)
        any_store.delete("/reader")

    def test_reader_missing(self, any_store):
        with pytest.raises(PathNotFound):
            any_store.reader("/missing")
        with pytest.raises(PathNotFound):
            any_store.reader("/missing", 10)

    def test_reader_streams_in_chunks(self, store):
        data = blob(3 * MiB + 12345, seed=3)
        store.put_content("/stream/blob", data)
        for offset in (0, MiB + 17):
            chunks = []
            with store.reader("/stream/blob", offset) as r:
                while chunk := r.read(64 * 1024):
                    assert len(chunk) <= 64 * 1024
                    chunks.append(chunk)
                assert r.read(64 * 1024) == b""
            assert b"".join(chunks) == data[offset:]
        store.delete("/stream/blob")

    def test_reader_read_all(self, store):
        store.put_content("/readall", b"0123456789")
        with store.reader("/readall", 3) as r:
            assert r.read() == b"3456789"
        r = store.reader("/readall")
        assert r.read(-1) == b"0123456789"
        r.close()
        store.delete("/readall")

    # -- writer: new files ------------------------------------------------------

    def test_writer_invisible_until_commit(self, any_store):
        w = any_store.writer("/w/new/file")
        assert w.size == 0
        assert w.write(b"abc") == 3
        assert w.write(b"defg") == 4
        assert w.size == 7
        with pytest.raises(PathNotFound):
            any_store.stat("/w/new/file")
        with pytest.raises(PathNotFound):
            any_store.get_content("/w/new/file")
        with pytest.raises(PathNotFound):
            any_store.stat("/w")
        assert any_store.list("/") == []
        w.commit()
        assert w.size == 7
        w.close()
        assert any_store.get_content("/w/new/file") == b"abcdefg"
        assert any_store.stat("/w/new/file").size == 7
        any_store.delete("/w")

    def test_writer_replaces_existing_on_commit(self, store):
        store.put_content("/w/file", b"old content")
        with store.writer("/w/file") as w:
            w.write(b"new")
            assert store.get_content("/w/file") == b"old content"
            w.commit()
        assert store.get_content("/w/file") == b"new"
        store.delete("/w/file")

    def test_writer_empty_commit(self, store):
        with store.writer("/w/empty") as w:
            w.commit()
        assert store.get_content("/w/empty") == b""
        assert store.stat("/w/empty").size == 0
        store.delete("/w/empty")

    def test_writer_cancel_leaves_nothing(self, any_store):
        w = any_store.writer("/w/cancelled/file")
        w.write(blob(100 * 1024))
        w.cancel()
        w.close()
        assert any_store.list("/") == []
        with pytest.raises(PathNotFound):
            any_store.stat("/w/cancelled/file")

    def test_writer_cancel_keeps_old_content(self, store):
        store.put_content("/w/file", b"old")
        w = store.writer("/w/file")
        w.write(b"replacement")
        w.cancel()
        assert store.get_content("/w/file") == b"old"
        store.delete("/w/file")

    def test_writer_close_without_commit_discards(self, store):
        w = store.writer("/w/closed")
        w.write(b"never committed")
        w.close()
        with pytest.raises(PathNotFound):
            store.stat("/w/closed")
        with pytest.raises(RuntimeError):
            with store.writer("/w/raised") as w:
                w.write(b"partial")
                raise RuntimeError("request aborted")
        assert store.list("/") == []

    def test_writer_many_small_writes(self, store):
        pieces = [blob(i % 300, seed=i) for i in range(2000)]
        with store.writer("/w/small") as w:
            for piece in pieces:
                assert w.write(piece) == len(piece)
            w.commit()
        assert store.get_content("/w/small") == b"".join(pieces)
        store.delete("/w/small")

    def test_writer_accepts_bytes_like(self, store):
        data = blob(300 * 1024)
        with store.writer("/w/view") as w:
            w.write(bytearray(data[:1000]))
            w.write(memoryview(data)[1000:])
            w.commit()
        assert store.get_content("/w/view") == data
        store.delete("/w/view")

    def test_write_after_end_raises(self, any_store):
        w = any_store.writer("/w/ended")
        w.write(b"x")
        w.commit()
        with pytest.raises(StorageError):
            w.write(b"y")
        with pytest.raises(StorageError):
            w.commit()
        w.cancel()  # no effect after commit
        w.close()
        assert any_store.get_content("/w/ended") == b"x"
        for end in ("cancel", "close"):
            w = any_store.writer("/w/other")
            getattr(w, end)()
            with pytest.raises(StorageError):
                w.write(b"y")
            with pytest.raises(StorageError):
                w.commit()
        any_store.delete("/w/ended")
        assert any_store.list("/") == []

    # -- writer: append ---------------------------------------------------------

    def test_append_in_committed_pieces(self, store):
        # The upload flow: one writer per chunk, each committed.
        pieces = [b"", b"first", b"", blob(MiB + 3, seed=1), b"", b"x", blob(70000, seed=2)]
        path = "/uploads/abc/data"
        total = b""
        for i, piece in enumerate(pieces):
            with store.writer(path, append=i > 0) as w:
                assert w.size == len(total)
                w.write(piece)
                assert w.size == len(total) + len(piece)
                w.commit()
            total += piece
            assert store.stat(path).size == len(total)
            assert store.get_content(path) == total
        with store.reader(path, len(total) - 70000) as r:
            assert r.read() == pieces[-1]
        store.delete("/uploads")

    def test_append_cancel_restores_previous(self, store):
        store.put_content("/append/file", b"hello")
        w = store.writer("/append/file", append=True)
        assert w.size == 5
        w.write(b" world" * 1000)
        w.cancel()
        assert store.get_content("/append/file") == b"hello"
        assert store.stat("/append/file").size == 5
        with store.writer("/append/file", append=True) as w:
            w.write(b" again")
            w.commit()
        assert store.get_content("/append/file") == b"hello again"
        store.delete("/append/file")

    def test_append_close_without_commit_restores_previous(self, store):
        store.put_content("/append/file", b"hello")
        with store.writer("/append/file", append=True) as w:
            w.write(b"lost")
        assert store.get_content("/append/file") == b"hello"
        store.delete("/append/file")

    def test_append_missing(self, any_store):
        with pytest.raises(PathNotFound):
            any_store.writer("/append/missing", append=True)
        assert any_store.list("/") == []

    # -- stat -------------------------------------------------------------------

    def test_stat_file(self, any_store):
        before = time.time()
        any_store.put_content("/stat/dir/file", b"12345")
        after = time.time()
        info = any_store.stat("/stat/dir/file")
        assert isinstance(info, FileInfo)
        assert info.path == "/stat/dir/file"
        assert info.size == 5
        assert info.is_dir is False
        assert before - 5 <= info.modtime <= after + 5  # coarse clocks
        any_store.delete("/stat")

    def test_stat_directory(self, any_store):
        any_store.put_content("/stat/dir/file", b"12345")
        for path in ("/stat", "/stat/dir"):
            info = any_store.stat(path)
            assert info.path == path
            assert info.is_dir is True
            assert info.size == 0
        root = any_store.stat("/")
        assert root.is_dir is True
        any_store.delete("/stat")
        assert any_store.stat("/").is_dir is True

    def test_directory_modtime_tracks_children(self, any_store):
        # The listing cache relies on this: 0.0 (unknown), or a new modtime
        # whenever a direct child is added or removed.
        any_store.put_content("/mt/a", b"1")

        def changed(before: float) -> bool:
            after = any_store.stat("/mt").modtime
            return before == after == 0.0 or after != before

        before = any_store.stat("/mt").modtime
        time.sleep(0.02)  # past coarse filesystem timestamp ticks
        any_store.put_content("/mt/b", b"2")
        assert changed(before)
        before = any_store.stat("/mt").modtime
        time.sleep(0.02)
        any_store.delete("/mt/b")
        assert changed(before)
        any_store.delete("/mt")

    def test_stat_missing(self, any_store):
        any_store.put_content("/stat/file", b"x")
        for path in ("/missing", "/stat/missing", "/stat/file/below", "/stat/fil"):
            with pytest.raises(PathNotFound):
                any_store.stat(path)
        any_store.delete("/stat/file")

    # -- list and walk ------------------------------------------------------------

    def test_list_children(self, any_store):
        files = ["/l/b", "/l/a/x", "/l/a/y/z", "/l/c.d", "/l/C", "/l/_u", "/l/-", "/l/0", "/other"]
        for path in files:
            any_store.put_content(path, path.encode())
        expected = ["/l/-", "/l/0", "/l/C", "/l/_u", "/l/a", "/l/b", "/l/c.d"]
        assert any_store.list("/l") == expected  # byte order
        assert any_store.list("/") == ["/l", "/other"]
        assert any_store.list("/l/a") == ["/l/a/x", "/l/a/y"]
        assert any_store.list("/l/a/y") == ["/l/a/y/z"]
        for path in files:
            any_store.delete(path)
        assert any_store.list("/") == []

    def test_list_missing_or_file(self, any_store):
        assert any_store.list("/") == []
        with pytest.raises(PathNotFound):
            any_store.list("/missing")
        any_store.put_content("/l/file", b"x")
        with pytest.raises(PathNotFound):
            any_store.list("/l/missing")
        with pytest.raises(PathNotFound):
            any_store.list("/l/file")
        any_store.delete("/l/file")

    def test_whole_components_only(self, any_store):
        any_store.put_content("/ab/c", b"1")
        any_store.put_content("/abc", b"2")
        for op in (any_store.list, any_store.stat, any_store.delete, any_store.get_content):
            with pytest.raises(PathNotFound):
                op("/a")
        assert any_store.list("/") == ["/ab", "/abc"]
        any_store.delete("/ab")
        assert any_store.get_content("/abc") == b"2"
        any_store.delete("/abc")

    def test_walk(self, any_store):
        for path, data in (("/walk/b", b"bb"), ("/walk/a/x", b"x"), ("/walk/a/y/z", b"zzz")):
            any_store.put_content(path, data)
        found = [(i.path, i.is_dir, i.size if not i.is_dir else None) for i in any_store.walk("/walk")]
        assert found == [
            ("/walk/a", True, None),
            ("/walk/a/x", False, 1),
            ("/walk/a/y", True, None),
            ("/walk/a/y/z", False, 3),
            ("/walk/b", False, 2),
        ]
        assert [i.path for i in any_store.walk("/")][:2] == ["/walk", "/walk/a"]
        any_store.delete("/walk")
        assert list(any_store.walk("/")) == []
        with pytest.raises(PathNotFound):
            list(any_store.walk("/walk"))

    # -- move ---------------------------------------------------------------------

    def test_move(self, any_store):
        data = blob(100 * 1024)
        any_store.put_content("/mv/src/file", data)
        any_store.move("/mv/src/file", "/mv/dst/deep/new/dir/file")
        assert any_store.get_content("/mv/dst/deep/new/dir/file") == data
        with pytest.raises(PathNotFound):
            any_store.stat("/mv/src/file")
        with pytest.raises(PathNotFound):
            any_store.stat("/mv/src")  # its last file left
        assert any_store.list("/mv") == ["/mv/dst"]
        any_store.delete("/mv")

    def test_move_replaces_destination(self, store):
        store.put_content("/mv/a", b"source")
        store.put_content("/mv/b", b"destination, longer")
        store.put_content("/mv/c", b"sibling")
        store.move("/mv/a", "/mv/b")
        assert store.get_content("/mv/b") == b"source"
        assert store.list("/mv") == ["/mv/b", "/mv/c"]
        store.delete("/mv")

    def test_move_missing_source(self, any_store):
        any_store.put_content("/mv/dst", b"kept")
        with pytest.raises(PathNotFound):
            any_store.move("/mv/missing", "/mv/dst")
        with pytest.raises(PathNotFound):
            any_store.move("/nowhere/missing", "/mv/new")
        assert any_store.get_content("/mv/dst") == b"kept"
        assert any_store.list("/mv") == ["/mv/dst"]
        any_store.delete("/mv")

    # -- delete -------------------------------------------------------------------

    def test_delete_file(self, any_store):
        any_store.put_content("/del/a", b"a")
        any_store.put_content("/del/b", b"b")
        any_store.delete("/del/a")
        with pytest.raises(PathNotFound):
            any_store.get_content("/del/a")
        assert any_store.list("/del") == ["/del/b"]
        any_store.delete("/del/b")
        assert any_store.list("/") == []

    def test_delete_directory_recursively(self, any_store):
        for path in ("/del/d/a", "/del/d/b/c", "/del/d/b/d/e", "/del/keep"):
            any_store.put_content(path, b"x")
        any_store.delete("/del/d")
        for path in ("/del/d", "/del/d/a", "/del/d/b/c"):
            with pytest.raises(PathNotFound):
                any_store.stat(path)
        assert any_store.list("/del") == ["/del/keep"]
        any_store.delete("/del")
        assert any_store.list("/") == []

    def test_delete_missing(self, any_store):
        with pytest.raises(PathNotFound):
            any_store.delete("/missing")
        any_store.put_content("/del/file", b"x")
        with pytest.raises(PathNotFound):
            any_store.delete("/del/missing")
        with pytest.raises(PathNotFound):
            any_store.delete("/del/file/below")
        any_store.delete("/del/file")
        with pytest.raises(PathNotFound):
            any_store.delete("/del/file")

    def test_delete_last_file_removes_empty_parents(self, any_store):
        any_store.put_content("/del/a/b/c/file", b"x")
        any_store.delete("/del/a/b/c/file")
        assert any_store.list("/") == []
        for path in ("/del", "/del/a", "/del/a/b/c"):
            with pytest.raises(PathNotFound):
                any_store.stat(path)
        any_store.put_content("/del/a/b/c/file", b"again")  # can be recreated
        assert any_store.get_content("/del/a/b/c/file") == b"again"
        any_store.delete("/del")

    # -- conditional create ---------------------------------------------------------

    def test_create_new_file(self, any_store):
        any_store.create("/cond/new", b"first")
        assert any_store.get_content("/cond/new") == b"first"
        any_store.create("/cond/empty", b"")
        assert any_store.get_content("/cond/empty") == b""
        any_store.delete("/cond")

    def test_create_existing_raises_and_keeps_content(self, any_store):
        any_store.put_content("/cond/taken", b"old")
        with pytest.raises(FileExists):
            any_store.create("/cond/taken", b"new")
        assert any_store.get_content("/cond/taken") == b"old"
        any_store.delete("/cond/taken")
        any_store.create("/cond/taken", b"again")  # free again once deleted
        assert any_store.get_content("/cond/taken") == b"again"
        any_store.delete("/cond")

    def test_concurrent_creates_have_one_winner(self, store):
        winners = []

        def create(i: int) -> None:
            try:
                store.create("/cond/race", b"holder-%d" % i)
                winners.append(i)
            except FileExists:
                pass

        run_threads(create, 8)
        assert len(winners) == 1, f"{len(winners)} creators won"
        assert store.get_content("/cond/race") == b"holder-%d" % winners[0]
        store.delete("/cond")

    def test_rewrite_moves_modtime_forward(self, store):
        """The garbage collector reads a file's age from ``modtime``:
        rewriting it must make it newer (or no older, within the backend's
        clock resolution of a second)."""
        store.put_content("/clock/f", b"x")
        first = store.stat("/clock/f").modtime
        assert abs(first - time.time()) < 120, "modtime is not a POSIX timestamp near now"
        time.sleep(1.1)
        store.put_content("/clock/f", b"x")
        assert store.stat("/clock/f").modtime > first
        walked = [i for i in store.walk("/clock") if i.path == "/clock/f"]
        assert walked and walked[0].modtime == store.stat("/clock/f").modtime
        store.delete("/clock")

    # -- concurrency ----------------------------------------------------------------

    def test_interleaved_writers_same_path(self, store):
        a, b = blob(MiB, seed=1), blob(MiB + MiB // 2, seed=2)
        wa, wb = store.writer("/race/file"), store.writer("/race/file")
        for i in range(0, len(b), 128 * 1024):
            wa.write(a[i:i + 128 * 1024])
            wb.write(b[i:i + 128 * 1024])
        wa.commit()
        assert store.get_content("/race/file") == a
        wb.commit()
        assert store.get_content("/race/file") == b  # the last commit wins
        wa.close()
        wb.close()
        store.delete("/race")

    def test_concurrent_writers_same_path(self, store):
        contents = [bytes([65 + i]) * (256 * 1024 + i) for i in range(4)]

        def write(i: int) -> None:
            with store.writer("/race/file") as w:
                for j in range(0, len(contents[i]), 32 * 1024):
                    w.write(contents[i][j:j + 32 * 1024])
                w.commit()

        run_threads(write, 4)
        assert store.get_content("/race/file") in contents
        store.delete("/race/file")

    def test_concurrent_puts_distinct_paths(self, store):
        def put(t: int) -> None:
            for i in range(25):
                store.put_content(f"/many/{t % 3}/{t}-{i}/f", blob(i * 100, seed=t * 100 + i))

        run_threads(put, 8)
        for t in range(8):
            for i in range(25):
                assert store.get_content(f"/many/{t % 3}/{t}-{i}/f") == blob(i * 100, seed=t * 100 + i)
        assert store.list("/many") == ["/many/0", "/many/1", "/many/2"]

        def delete(t: int) -> None:
            for i in range(25):
                store.delete(f"/many/{t % 3}/{t}-{i}/f")

        run_threads(delete, 8)
        assert store.list("/") == []

    def test_concurrent_create_and_delete_in_shared_directories(self, store):
        # Deleting a directory's last file (which removes empty directories)
        # races with other threads creating files there; no call may fail.
        def churn(t: int) -> None:
            for i in range(40):
                path = f"/churn/a/b/{t}"
                if i % 3 == 0:
                    store.put_content(path, b"put")
                elif i % 3 == 1:
                    with store.writer(path) as w:
                        w.write(b"writer")
                        w.commit()
                else:
                    store.put_content(f"/churn/tmp/{t}", b"moved")
                    store.move(f"/churn/tmp/{t}", path)
                assert store.get_content(path) in (b"put", b"writer", b"moved")
                store.delete(path)

        run_threads(churn, 6)
        assert store.list("/") == []

    # -- paths ----------------------------------------------------------------------

    def test_unusual_component_names(self, any_store):
        names = ["a.b", "c-d", "_e", ".f", "..g", "...", "-", "h..", "UPPER", "0", "x" * 200]
        for name in names:
            any_store.put_content(f"/names/{name}/{name}", name.encode())
        assert any_store.list("/names") == sorted(f"/names/{n}" for n in names)
        for name in names:
            assert any_store.get_content(f"/names/{name}/{name}") == name.encode()
            assert any_store.list(f"/names/{name}") == [f"/names/{name}/{name}"]
        any_store.delete("/names")

    def test_deep_path(self, store):
        path = "/" + "/".join(f"d{i}" for i in range(30)) + "/file"
        store.put_content(path, b"deep")
        assert store.get_content(path) == b"deep"
        store.delete(path)
        assert store.list("/") == []

    # -- redirect_url -----------------------------------------------------------------

    def test_redirect_url(self, any_store):
        any_store.put_content("/redirect/file", b"x")
        for method in ("GET", "HEAD"):
            url = any_store.redirect_url("/redirect/file", method)
            assert url is None or (isinstance(url, str) and url)
        any_store.delete("/redirect")

    # -- put_volatile / delete_volatile ----------------------------------------------

    def test_volatile_state_behaves_like_content(self, any_store):
        any_store.put_volatile("/volatile/dir/state", b"one")
        any_store.put_volatile("/volatile/dir/state", b"two")  # replaces, atomically
        assert any_store.get_content("/volatile/dir/state") == b"two"
        any_store.put_content("/volatile/keep", b"k")
        any_store.delete_volatile("/volatile/dir")
        with pytest.raises(PathNotFound):
            any_store.stat("/volatile/dir")
        assert any_store.list("/volatile") == ["/volatile/keep"]
        with pytest.raises(PathNotFound):
            any_store.delete_volatile("/volatile/dir")
        any_store.delete("/volatile")

    # -- local_file -------------------------------------------------------------------

    def test_local_file(self, any_store):
        data = blob(3 * MiB + 5, seed=11)
        any_store.put_content("/local/file", data)
        file = any_store.local_file("/local/file")
        if file is None:  # an object store: nothing local, the registry copies
            any_store.delete("/local")
            return
        try:
            assert os.pread(file.fileno(), len(data) + 1, 0) == data
            with pytest.raises(PathNotFound):
                any_store.local_file("/local")  # a directory is not a file
            # Deleting the path leaves an open file readable (a GET in progress).
            any_store.delete("/local/file")
            assert os.pread(file.fileno(), 10, len(data) - 10) == data[-10:]
        finally:
            file.close()
        with pytest.raises(PathNotFound):
            any_store.local_file("/local/file")

    # -- CheckedDriver ----------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_PATHS)
    def test_checked_rejects_bad_paths(self, store, bad):
        spy = _Spy(store.driver)
        checked = CheckedDriver(spy)
        calls = [
            lambda: checked.get_content(bad),
            lambda: checked.put_content(bad, b"x"),
            lambda: checked.reader(bad),
            lambda: checked.writer(bad),
            lambda: checked.writer(bad, append=True),
            lambda: checked.stat(bad),
            lambda: checked.list(bad),
            lambda: checked.walk(bad),
            lambda: checked.move(bad, "/ok"),
            lambda: checked.move("/ok", bad),
            lambda: checked.delete(bad),
            lambda: checked.redirect_url(bad),
        ]
        for call in calls:
            with pytest.raises(InvalidPath) as info:
                call()
            assert info.value.driver == store.driver.name
        assert spy.calls == []

    def test_checked_rejects_root_for_file_operations(self, store):
        spy = _Spy(store.driver)
        checked = CheckedDriver(spy)
        for call in (
            lambda: checked.get_content("/"),
            lambda: checked.put_content("/", b"x"),
            lambda: checked.reader("/"),
            lambda: checked.writer("/"),
            lambda: checked.move("/", "/a"),
            lambda: checked.move("/a", "/"),
            lambda: checked.delete("/"),
            lambda: checked.redirect_url("/"),
        ):
            with pytest.raises(InvalidPath):
                call()
        assert spy.calls == []
        assert checked.list("/") == []
        assert spy.calls == ["list"]

    def test_checked_rejects_bad_offsets(self, store):
        store.put_content("/offset", b"abc")
        spy = _Spy(store.driver)
        checked = CheckedDriver(spy)
        for offset in (-1, -(1 << 40), 1.5, "1", None):
            with pytest.raises(InvalidOffset):
                checked.reader("/offset", offset)
        assert spy.calls == []
        store.delete("/offset")

    def test_checked_tags_errors(self, store):
        with pytest.raises(PathNotFound) as info:
            store.get_content("/missing")
        assert info.value.driver == store.driver.name
        assert info.value.path == "/missing"
        with pytest.raises(PathNotFound) as info:
            store.writer("/missing", append=True)
        assert info.value.driver == store.driver.name

    def test_checked_records_stats(self, store):
        store.put_content("/stats/a", b"abc")
        store.get_content("/stats/a")
        store.get_content("/stats/a")
        with store.reader("/stats/a") as r:
            r.read(2)
        with store.writer("/stats/b") as w:
            w.write(b"x")
            w.commit()
        with pytest.raises(PathNotFound):
            store.stat("/stats/missing")
        store.delete("/stats")
        stats = dict(store.stats)
        for op, count in {"put_content": 1, "get_content": 2, "reader": 1, "reader.read": 1,
                          "writer": 1, "writer.write": 1, "writer.commit": 1, "stat": 1,
                          "delete": 1}.items():
            assert stats[op][0] == count, op
            assert stats[op][1] >= 0.0
