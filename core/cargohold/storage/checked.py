"""The wrapper the core puts around every storage driver.

:class:`CheckedDriver` is the single place where paths and offsets are
validated, errors are normalised and calls are timed, so drivers can stay
simple and the rest of the core can rely on the contract in
:mod:`cargohold.storage.driver`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from time import perf_counter
from typing import BinaryIO, Callable, Iterator, NoReturn

from cargohold.storage.driver import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    InvalidPath,
    StorageDriver,
    StorageError,
)

# One or more "/component"; a component is [A-Za-z0-9._-]+ but not "." or "..".
_PATH = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9._-]+)+")


def validate_path(path: str, root_ok: bool = True, driver: str | None = None) -> str:
    """Return ``path`` if it follows the path grammar (see
    :mod:`cargohold.storage.driver`), else raise :class:`InvalidPath` naming
    ``driver``.  ``/`` passes only when ``root_ok``."""
    if path == "/":
        if root_ok:
            return path
    elif type(path) is str and _PATH.fullmatch(path):
        return path
    raise InvalidPath(_invalid(path), path=path if type(path) is str else None, driver=driver)


def _file_path(path: str, driver: str) -> None:
    if type(path) is not str or not _PATH.fullmatch(path):
        raise InvalidPath(_invalid(path), path=path if type(path) is str else None, driver=driver)


def _invalid(path: object) -> str:
    if path == "/":
        return "'/' is a directory, not a file"
    return f"invalid storage path {path!r}"


class OperationStats(Mapping):
    """Per-operation call counts and cumulative seconds, read as a mapping
    ``op -> (count, total_seconds)``; ``dict(stats)`` is a snapshot.

    Operations are the driver method names plus ``reader.read``,
    ``writer.write``, ``writer.commit`` and ``writer.cancel``.  Failed calls
    are counted too.  Observers added with :meth:`add_observer` see every
    call as it is recorded.
    """

    def __init__(self) -> None:
        self._data: dict[str, list] = {}
        self._lock = threading.Lock()
        self._observers: list[Callable[[str, float], None]] = []

    def add_observer(self, observer: Callable[[str, float], None]) -> None:
        """Also call ``observer(op, seconds)`` for every recorded call (the
        app's metrics).  It must be cheap and must not raise."""
        self._observers.append(observer)

    def record(self, op: str, seconds: float) -> None:
        with self._lock:
            entry = self._data.get(op)
            if entry is None:
                self._data[op] = [1, seconds]
            else:
                entry[0] += 1
                entry[1] += seconds
        for observer in self._observers:
            observer(op, seconds)

    def __getitem__(self, op: str) -> tuple[int, float]:
        count, total = self._data[op]
        return count, total

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"OperationStats({dict(self)!r})"


def _raise(exc: Exception, name: str, path: str | None) -> NoReturn:
    """Re-raise ``exc`` as a :class:`StorageError` tagged with the driver."""
    try:
        if isinstance(exc, StorageError):
            if exc.driver is None:
                exc.driver = name
            if exc.path is None:
                exc.path = path
            raise exc
        # A driver leaked a foreign exception: contain it, keep the cause chained.
        raise StorageError(f"{type(exc).__name__}: {exc}", path=path, driver=name) from exc
    finally:
        # This frame is in the traceback of what it raises: holding the
        # exception here would make a cycle that keeps every frame of the
        # request (a manifest body, say) alive until the garbage collector
        # runs, for each PathNotFound a lookup expects.
        del exc


class CheckedDriver(StorageDriver):
    """Wraps ``driver``: validates every path and offset before the driver
    sees it (:class:`InvalidPath`, :class:`InvalidOffset`), turns every error
    into a :class:`StorageError` whose ``driver`` (and, if unset, ``path``) is
    filled in, and records each call in :attr:`stats`.  Readers and writers it
    returns are wrapped the same way.  The wrapped driver is :attr:`driver`.

    ``/`` is accepted by ``stat``, ``list`` and ``walk`` only; the file
    operations reject it with :class:`InvalidPath`.
    """

    def __init__(self, driver: StorageDriver):
        self.driver = driver
        self.name = driver.name
        self.stats = OperationStats()

    def __repr__(self) -> str:
        return f"CheckedDriver({self.driver!r})"

    def get_content(self, path: str) -> bytes:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            return self.driver.get_content(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("get_content", perf_counter() - start)

    def put_content(self, path: str, data: bytes) -> None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            self.driver.put_content(path, data)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("put_content", perf_counter() - start)

    def put_volatile(self, path: str, data: bytes) -> None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            self.driver.put_volatile(path, data)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("put_volatile", perf_counter() - start)

    def delete_volatile(self, path: str) -> None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            self.driver.delete_volatile(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("delete_volatile", perf_counter() - start)

    def create(self, path: str, data: bytes) -> None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            self.driver.create(path, data)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("create", perf_counter() - start)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        _file_path(path, self.name)
        if type(offset) is not int or offset < 0:
            raise InvalidOffset(f"invalid offset {offset!r}", path=path, driver=self.name)
        start = perf_counter()
        try:
            return _CheckedReader(self.driver.reader(path, offset), self, path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("reader", perf_counter() - start)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            return _CheckedWriter(self.driver.writer(path, append), self, path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("writer", perf_counter() - start)

    def stat(self, path: str) -> FileInfo:
        validate_path(path, driver=self.name)
        start = perf_counter()
        try:
            return self.driver.stat(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("stat", perf_counter() - start)

    def list(self, path: str) -> list[str]:
        validate_path(path, driver=self.name)
        start = perf_counter()
        try:
            return self.driver.list(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("list", perf_counter() - start)

    def walk(self, path: str) -> Iterator[FileInfo]:
        validate_path(path, driver=self.name)  # now, not at the first next()
        return self._walk(path)

    def _walk(self, path: str) -> Iterator[FileInfo]:
        # Only time spent inside the driver counts, not the consumer's.
        elapsed = 0.0
        start = perf_counter()
        try:
            it = iter(self.driver.walk(path))
            while True:
                try:
                    info = next(it)
                except StopIteration:
                    return
                elapsed += perf_counter() - start
                yield info
                start = perf_counter()
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("walk", elapsed + perf_counter() - start)

    def move(self, src: str, dst: str) -> None:
        _file_path(src, self.name)
        _file_path(dst, self.name)
        start = perf_counter()
        try:
            self.driver.move(src, dst)
        except Exception as exc:
            _raise(exc, self.name, src)
        finally:
            self.stats.record("move", perf_counter() - start)

    def delete(self, path: str) -> None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            self.driver.delete(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("delete", perf_counter() - start)

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            return self.driver.redirect_url(path, method)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("redirect_url", perf_counter() - start)

    def local_directory(self) -> str | None:
        return self.driver.local_directory()

    def local_file(self, path: str) -> BinaryIO | None:
        _file_path(path, self.name)
        start = perf_counter()
        try:
            return self.driver.local_file(path)
        except Exception as exc:
            _raise(exc, self.name, path)
        finally:
            self.stats.record("local_file", perf_counter() - start)

    def close(self) -> None:
        try:
            self.driver.close()
        except Exception as exc:
            _raise(exc, self.name, None)


class _CheckedReader:
    """A driver's reader with errors normalised and reads timed."""

    def __init__(self, reader: BinaryIO, owner: CheckedDriver, path: str):
        self._reader = reader
        self._owner = owner
        self._path = path

    def read(self, n: int = -1) -> bytes:
        start = perf_counter()
        try:
            return self._reader.read(n)
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)
        finally:
            self._owner.stats.record("reader.read", perf_counter() - start)

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)

    def __enter__(self) -> "_CheckedReader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class _CheckedWriter(FileWriter):
    """A driver's writer with errors normalised and calls timed."""

    def __init__(self, writer: FileWriter, owner: CheckedDriver, path: str):
        self._writer = writer
        self._owner = owner
        self._path = path

    def write(self, data: bytes) -> int:
        start = perf_counter()
        try:
            return self._writer.write(data)
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)
        finally:
            self._owner.stats.record("writer.write", perf_counter() - start)

    @property
    def size(self) -> int:
        try:
            return self._writer.size
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)

    def commit(self) -> None:
        start = perf_counter()
        try:
            self._writer.commit()
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)
        finally:
            self._owner.stats.record("writer.commit", perf_counter() - start)

    def cancel(self) -> None:
        start = perf_counter()
        try:
            self._writer.cancel()
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)
        finally:
            self._owner.stats.record("writer.cancel", perf_counter() - start)

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception as exc:
            _raise(exc, self._owner.name, self._path)
