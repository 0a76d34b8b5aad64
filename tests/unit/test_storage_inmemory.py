"""The storage suite against InMemoryDriver, plus CheckedDriver's own behaviour."""

import pytest

from cargohold.storage.checked import CheckedDriver, validate_path
from cargohold.storage.driver import (
    FileWriter,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
)
from cargohold.storage.inmemory import InMemoryDriver, create_driver
from cargohold.testing.storage import StorageDriverSuite


class TestInMemoryDriver(StorageDriverSuite):
    @pytest.fixture
    def driver(self):
        d = InMemoryDriver()
        yield d
        d.close()

    def test_file_and_directory_conflicts_are_errors(self, store):
        store.put_content("/c/file", b"x")
        with pytest.raises(StorageError):
            store.put_content("/c/file/below", b"y")
        with pytest.raises(StorageError):
            store.put_content("/c", b"y")
        with pytest.raises(StorageError):
            store.move("/c/file", "/c")
        assert store.get_content("/c/file") == b"x"
        store.delete("/c")

    def test_appends_invisible_until_commit(self, store):
        store.put_content("/a", b"base")
        with store.writer("/a", append=True) as w:
            w.write(b"more")
            assert store.get_content("/a") == b"base"
            w.commit()
        assert store.get_content("/a") == b"basemore"
        store.delete("/a")


def test_factory():
    assert isinstance(create_driver({}), InMemoryDriver)
    with pytest.raises(ValueError, match="storage.inmemory.size"):
        create_driver({"size": 1})


class _Broken(StorageDriver):
    """Leaks foreign exceptions from every operation, readers and writers."""

    name = "broken"

    def get_content(self, path):
        raise KeyError(path)

    def put_content(self, path, data):
        raise OSError(28, "No space left on device")

    def reader(self, path, offset=0):
        return _BrokenIO()

    def writer(self, path, append=False):
        return _BrokenWriter()

    def stat(self, path):
        raise PathNotFound("gone", path=path)

    def list(self, path):
        raise StorageError("backend down")

    def walk(self, path):
        yield from ()
        raise ValueError("walk failed")

    def move(self, src, dst):
        raise RuntimeError("boom")

    def delete(self, path):
        raise ZeroDivisionError()


class _BrokenIO:
    def read(self, n=-1):
        raise ConnectionResetError("reset")

    def close(self):
        raise OSError("close failed")


class _BrokenWriter(FileWriter):
    size = 0

    def write(self, data):
        raise OSError("write failed")

    def commit(self):
        raise OSError("commit failed")

    def cancel(self):
        raise OSError("cancel failed")

    def close(self):
        pass


class TestCheckedDriver:
    def test_validate_path(self):
        assert validate_path("/") == "/"
        assert validate_path("/v2/blobs/sha256/ab/abcd/data") == "/v2/blobs/sha256/ab/abcd/data"
        with pytest.raises(InvalidPath):
            validate_path("/", root_ok=False)
        with pytest.raises(InvalidPath):
            validate_path("/a/../b")

    def test_foreign_exceptions_become_storage_errors(self):
        checked = CheckedDriver(_Broken())
        for call, cause in (
            (lambda: checked.get_content("/a"), KeyError),
            (lambda: checked.put_content("/a", b""), OSError),
            (lambda: list(checked.walk("/")), ValueError),
            (lambda: checked.move("/a", "/b"), RuntimeError),
            (lambda: checked.delete("/a"), ZeroDivisionError),
            (lambda: checked.reader("/a").read(1), ConnectionResetError),
            (lambda: checked.reader("/a").close(), OSError),
            (lambda: checked.writer("/a").write(b"x"), OSError),
            (lambda: checked.writer("/a").commit(), OSError),
            (lambda: checked.writer("/a").cancel(), OSError),
        ):
            with pytest.raises(StorageError) as info:
                call()
            assert type(info.value) is StorageError
            assert isinstance(info.value.__cause__, cause)
            assert info.value.driver == "broken"
            assert info.value.path in ("/a", "/")

    def test_storage_errors_pass_through_tagged(self):
        checked = CheckedDriver(_Broken())
        with pytest.raises(PathNotFound) as info:
            checked.stat("/x")
        assert info.value.driver == "broken"
        with pytest.raises(StorageError) as info:
            checked.list("/x")
        assert (info.value.driver, info.value.path) == ("broken", "/x")
        assert "driver=broken" in str(info.value)

    def test_failed_calls_are_counted(self):
        checked = CheckedDriver(_Broken())
        for _ in range(3):
            with pytest.raises(StorageError):
                checked.list("/")
        assert checked.stats["list"][0] == 3
        assert "get_content" not in checked.stats
