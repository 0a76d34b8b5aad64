"""A storage driver that keeps everything in a dict, for tests and demos.

Configured as ``storage: {inmemory: {}}``.  Content lives only as long as the
process, and each worker process has its own.
"""

from __future__ import annotations

import io
import threading
import time
from typing import BinaryIO

from cargohold.storage.driver import (
    FileExists,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
)


def _parent(path: str) -> str:
    return path.rpartition("/")[0] or "/"


class InMemoryDriver(StorageDriver):
    """Files in a dict, directories derived from them, one lock around both.

    Stricter than the contract where that helps catch bugs in callers: a file
    where a directory is, or below a file, raises :class:`StorageError`, and
    appends become visible only on ``commit``.
    """

    name = "inmemory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, float]] = {}  # path -> (data, modtime)
        # Directory path -> full paths of its children; "/" is always there.
        self._dirs: dict[str, set[str]] = {"/": set()}
        self._dir_mtimes: dict[str, float] = {"/": time.time()}

    # -- bookkeeping, called with the lock held ------------------------------

    def _store(self, path: str, data: bytes) -> None:
        if path in self._dirs:
            raise StorageError("a directory is in the way", path=path)
        parent = _parent(path)
        while parent != "/":
            if parent in self._files:
                raise StorageError(f"{parent} is a file", path=path)
            parent = _parent(parent)
        now = time.time()
        if path not in self._files:
            child, parent = path, _parent(path)
            while True:
                self._dir_mtimes[parent] = now
                children = self._dirs.get(parent)
                if children is not None:
                    children.add(child)
                    break
                self._dirs[parent] = {child}
                child, parent = parent, _parent(parent)
        self._files[path] = (data, now)

    def _unlink(self, path: str) -> None:
        del self._files[path]
        now = time.time()
        child = path
        while True:
            parent = _parent(child)
            children = self._dirs[parent]
            children.discard(child)
            self._dir_mtimes[parent] = now
            if children or parent == "/":
                return
            del self._dirs[parent]
            del self._dir_mtimes[parent]
            child = parent

    def _files_below(self, path: str) -> list[str]:
        found, stack = [], [path]
        while stack:
            for child in self._dirs[stack.pop()]:
                (stack if child in self._dirs else found).append(child)
        return found

    def _get(self, path: str) -> bytes:
        try:
            return self._files[path][0]
        except KeyError:
            raise PathNotFound(path=path) from None

    # -- the contract ----------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        with self._lock:
            return self._get(path)

    def put_content(self, path: str, data: bytes) -> None:
        data = bytes(data)
        with self._lock:
            self._store(path, data)

    def create(self, path: str, data: bytes) -> None:
        data = bytes(data)
        with self._lock:
            if path in self._files or path in self._dirs:
                raise FileExists(path=path)
            self._store(path, data)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        with self._lock:
            data = self._get(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffset(f"offset {offset} outside 0..{len(data)}", path=path)
        stream = io.BytesIO(data)  # shares the immutable bytes, no copy
        stream.seek(offset)
        return stream

    def writer(self, path: str, append: bool = False) -> FileWriter:
        base = b""
        if append:
            with self._lock:
                base = self._get(path)
        return _InMemoryWriter(self, path, base)

    def stat(self, path: str) -> FileInfo:
        with self._lock:
            entry = self._files.get(path)
            if entry is not None:
                return FileInfo(path, len(entry[0]), entry[1], False)
            if path in self._dirs:
                return FileInfo(path, 0, self._dir_mtimes[path], True)
        raise PathNotFound(path=path)

    def list(self, path: str) -> list[str]:
        with self._lock:
            children = self._dirs.get(path)
            if children is None:
                raise PathNotFound(path=path)
            return sorted(children)

    def move(self, src: str, dst: str) -> None:
        with self._lock:
            data = self._get(src)
            if src == dst:
                return
            self._store(dst, data)
            self._unlink(src)

    def delete(self, path: str) -> None:
        with self._lock:
            if path in self._files:
                self._unlink(path)
            elif path in self._dirs and path != "/":
                for file in self._files_below(path):
                    self._unlink(file)
            else:
                raise PathNotFound(path=path)


class _InMemoryWriter(FileWriter):
    """Buffers in memory; ``commit`` stores base + buffer in one step."""

    def __init__(self, driver: InMemoryDriver, path: str, base: bytes):
        self._driver = driver
        self._path = path
        self._buffer = bytearray(base)
        self._size = len(base)
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        before = len(self._buffer)
        self._buffer += data
        self._size = len(self._buffer)
        return self._size - before

    @property
    def size(self) -> int:
        return self._size

    def commit(self) -> None:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        self._done = True
        data = bytes(self._buffer)
        self._buffer = bytearray()
        with self._driver._lock:
            self._driver._store(self._path, data)

    def cancel(self) -> None:
        self._done = True
        self._buffer = bytearray()

    def close(self) -> None:
        self.cancel()


def create_driver(params: dict) -> InMemoryDriver:
    """Factory for the ``storage.inmemory`` config section (no settings)."""
    if params:
        raise ValueError(f"storage.inmemory.{next(iter(params))}: unknown setting")
    return InMemoryDriver()
