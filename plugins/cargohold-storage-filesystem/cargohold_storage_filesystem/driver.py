"""The local filesystem storage driver."""

from __future__ import annotations

import io
import os
import shutil
import stat as stat_module
import time
from typing import BinaryIO, Iterator

from cargohold.blocking import offload
from cargohold.storage.driver import (
    FileExists,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
)

# Temporary files live in <root>/~tmp.  "~" cannot occur in a path component,
# so no key maps there and listings skip any name containing it.
TMP_DIR = "~tmp"
STALE_TMP_SECONDS = 24 * 3600
READ_BUFFER = 1 << 20
WRITE_BUFFER = 1 << 20
# A writer asks the kernel to start writing its file to the disk after each
# this many bytes (see _write_out), instead of leaving it all to the fsync.
WRITEBACK_STEP = 8 << 20
# Reads at least this large may hit the disk for long enough to hand off.
OFFLOAD_READ = 64 * 1024
# A new file's directory can be removed by a concurrent delete between our
# makedirs and rename; each retry recreates it.  Bounded only as a safeguard.
RETRIES = 100

_NOT_FOUND = (FileNotFoundError, NotADirectoryError)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fsync_dir(directory: str) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return  # emptied and removed meanwhile: nothing left to persist
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]


def _start_writeback():
    """``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)`` from the
    C library where there is one (Linux), else ``None``."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE: start writing dirty pages, do not wait
    return lambda fd, offset, count: call(fd, offset, count, write)


_writeback = _start_writeback()


def _write_out(fd: int, data, start: int, count: int) -> None:
    """Write ``data``, then, when ``count`` > 0, ask the kernel to start
    writing ``count`` bytes from ``start`` to the disk now (it returns at
    once).  Without that the kernel would keep a large upload in dirty pages
    until the commit's fsync, and the disk would idle while the body
    arrives, then the client would wait for all of it at the end.  Nothing
    is promised about durability here; the commit's fsync still does that."""
    _write_all(fd, data)
    if count > 0 and _writeback is not None:
        _writeback(fd, start, count)


def _error(exc: OSError, path: str) -> StorageError:
    return StorageError(f"{type(exc).__name__}: {exc.strerror or exc}", path=path)


class FilesystemDriver(StorageDriver):
    """Stores path ``/a/b`` at ``<rootdirectory>/a/b``.

    New content is written to a temporary file under ``<root>/~tmp``, fsynced,
    renamed over the target and the target's directory fsynced, so
    ``put_content`` and writer commits are atomic and durable.  Append writers
    append in place (fsync on commit, truncate back on cancel).  Empty
    directories are removed after ``delete`` and ``move``, racing safely with
    writers that create files in them.  Several processes may share a root.

    The root (and ``~tmp``) are created if missing; leftover temporary files
    older than a day (from a crash) are removed at start.
    """

    name = "filesystem"

    def __init__(self, rootdirectory: str):
        self.root = os.path.abspath(rootdirectory)
        self._tmp = os.path.join(self.root, TMP_DIR)
        os.makedirs(self._tmp, exist_ok=True)
        self._purge_tmp()

    def __repr__(self) -> str:
        return f"FilesystemDriver({self.root!r})"

    def local_directory(self) -> str:
        """The root directory itself (its ``~`` entries never clash with
        storage keys)."""
        return self.root

    # -- helpers ---------------------------------------------------------------

    def _purge_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_SECONDS
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)  # a deleted tree
                    elif entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    pass

    def _tmp_name(self) -> str:
        return os.path.join(self._tmp, os.urandom(12).hex())

    def _mkstemp(self) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        name = self._tmp_name()
        try:
            return name, os.open(name, flags, 0o666)
        except FileNotFoundError:  # ~tmp was removed from outside
            os.makedirs(self._tmp, exist_ok=True)
            return name, os.open(name, flags, 0o666)

    def _makedirs(self, directory: str, created: list[str]) -> None:
        """Create ``directory`` and its missing parents below the root,
        adding the parent of each one created to ``created`` (their new
        entries still need an fsync)."""
        missing = []
        while len(directory) > len(self.root) and not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for directory in reversed(missing):
            try:
                os.mkdir(directory)
            except FileExistsError:
                continue
            created.append(os.path.dirname(directory))

    def _rename_into(self, src: str, dst: str, place=None, durable: bool = True) -> None:
        """``place(src, dst)`` (``os.replace`` by default, or ``os.link`` for a
        create that must not replace), creating ``dst``'s directory as needed
        and retrying when a concurrent delete removes it under us.  Raises
        ``FileNotFoundError`` if ``src`` is gone.

        Durability: every directory that got a new entry (``dst``'s, and the
        parent of each directory created) is fsynced, once each, after the
        rename, deepest first.  Batching them at the end rather than after
        each ``mkdir`` gives the same guarantee when the call returns (all
        entries on disk), while on a journaling file system (ext4, xfs) the
        first fsync commits every change of the call in one transaction and
        the others find nothing left to commit.  A crash in between can only
        leave unreachable empty directories or a temporary file, never a
        partial ``dst``: its content was fsynced before the rename."""
        place = place or os.replace  # looked up per call (tests replace it)
        parent = os.path.dirname(dst)
        created: list[str] = []
        for _ in range(RETRIES):
            try:
                place(src, dst)
                break
            except FileNotFoundError:
                if not os.path.lexists(src):
                    raise
                try:
                    self._makedirs(parent, created)
                except FileNotFoundError:
                    pass  # a parent vanished again: retry
        else:
            raise StorageError("could not create the parent directory", path=dst)
        if durable:
            for directory in dict.fromkeys([parent, *reversed(created)]):
                _fsync_dir(directory)

    def _prune(self, directory: str) -> None:
        """Remove ``directory`` and its parents below the root while empty."""
        root = self.root
        while len(directory) > len(root):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass  # removed concurrently; its parent may be empty now
            except OSError:
                return  # not empty
            directory = os.path.dirname(directory)

    # -- the contract -------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        try:
            fd = os.open(self.root + path, os.O_RDONLY | _O_CLOEXEC)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # one read unless the file changed
            if len(data) == size:
                return data
            parts = [data]
            while chunk := os.read(fd, READ_BUFFER):
                parts.append(chunk)
            return b"".join(parts)
        except IsADirectoryError:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        finally:
            os.close(fd)

    # put_content, move and delete end with an fsync (of the file or of its
    # directory), which waits for the disk: they run through offload() so
    # that other requests of the worker keep being served meanwhile.

    def put_content(self, path: str, data: bytes) -> None:
        offload(self._place, path, data, os.replace)

    def put_volatile(self, path: str, data: bytes) -> None:
        """Atomic (a temporary file renamed into place) without any fsync:
        the content survives the process (the page cache has it) but not
        necessarily a power failure."""
        offload(self._place, path, data, os.replace, False)

    def create(self, path: str, data: bytes) -> None:
        """A finished temporary file hard-linked into place: ``link`` fails
        when the name exists, so exactly one concurrent creator wins."""
        offload(self._place, path, data, os.link)

    def _place(self, path: str, data: bytes, place, durable: bool = True) -> None:
        tmp, fd = self._mkstemp()
        try:
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._rename_into(tmp, self.root + path, place, durable)
        except FileExistsError:
            raise FileExists(path=path) from None
        except BaseException as exc:
            if isinstance(exc, OSError):
                raise _error(exc, path) from exc
            raise
        finally:
            try:
                os.unlink(tmp)  # gone after a rename; the spare name after a link
            except OSError:
                pass

    def _open(self, path: str) -> io.FileIO:
        try:
            return io.FileIO(self.root + path, "rb")
        except (*_NOT_FOUND, IsADirectoryError):
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        raw = self._open(path)
        try:
            size = os.fstat(raw.fileno()).st_size
            if offset < 0 or offset > size:
                raise InvalidOffset(f"offset {offset} outside 0..{size}", path=path)
            if offset:
                raw.seek(offset)
        except BaseException:
            raw.close()
            raise
        return _Reader(raw, path)

    def local_file(self, path: str) -> BinaryIO:
        """The stored file itself, opened unbuffered: the server sends it
        with ``sendfile``, without copying the bytes through Python."""
        raw = self._open(path)
        if not stat_module.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raw.close()
            raise PathNotFound(path=path)
        return raw

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return _Writer(self, path, append)

    def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self.root + path)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        if stat_module.S_ISDIR(st.st_mode):
            return FileInfo(path, 0, st.st_mtime, True)
        return FileInfo(path, st.st_size, st.st_mtime, False)

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self.root + path)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        prefix = "" if path == "/" else path
        children = sorted(f"{prefix}/{name}" for name in names if "~" not in name)
        if not children and prefix:
            # An empty directory left by a crash, or being created right now.
            raise PathNotFound(path=path)
        return children

    def walk(self, path: str) -> Iterator[FileInfo]:
        # Directories vanishing mid-walk (concurrent deletes) are skipped;
        # only a missing starting point is an error.
        try:
            entries = self._scan(path)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        return self._walk(path, entries)

    def _scan(self, path: str) -> list[os.DirEntry]:
        with os.scandir(self.root + path) as it:
            return sorted((e for e in it if "~" not in e.name), key=lambda e: e.name)

    def _walk(self, path: str, entries: list[os.DirEntry]) -> Iterator[FileInfo]:
        prefix = "" if path == "/" else path
        for entry in entries:
            child = f"{prefix}/{entry.name}"
            try:
                st = entry.stat()
                is_dir = stat_module.S_ISDIR(st.st_mode)
                below = self._scan(child) if is_dir else None
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _error(exc, child) from exc
            yield FileInfo(child, 0 if is_dir else st.st_size, st.st_mtime, is_dir)
            if below is not None:
                yield from self._walk(child, below)

    def move(self, src: str, dst: str) -> None:
        offload(self._move, src, dst)

    def _move(self, src: str, dst: str) -> None:
        full_src = self.root + src
        try:
            self._rename_into(full_src, self.root + dst)
        except _NOT_FOUND as exc:
            if not os.path.isfile(full_src):
                raise PathNotFound(path=src) from None
            raise _error(exc, dst) from exc
        except OSError as exc:
            raise _error(exc, dst) from exc
        src_dir = os.path.dirname(full_src)
        if src_dir != os.path.dirname(self.root + dst):
            _fsync_dir(src_dir)
            self._prune(src_dir)

    def delete(self, path: str) -> None:
        offload(self._delete, path)

    def delete_volatile(self, path: str) -> None:
        """:meth:`delete` without the fsync of the parent directory."""
        offload(self._delete, path, False)

    def _delete(self, path: str, durable: bool = True) -> None:
        full = self.root + path
        try:
            os.unlink(full)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except (IsADirectoryError, PermissionError) as exc:
            if not os.path.isdir(full):
                raise _error(exc, path) from exc
            self._delete_tree(full, path)
        except OSError as exc:
            raise _error(exc, path) from exc
        parent = os.path.dirname(full)
        if durable:
            _fsync_dir(parent)
        self._prune(parent)

    def _delete_tree(self, full: str, path: str) -> None:
        # Renaming first makes the whole tree vanish at once; writers that
        # race with us recreate the directory instead of failing in rmtree.
        trash = self._tmp_name()
        try:
            os.rename(full, trash)
        except _NOT_FOUND:
            raise PathNotFound(path=path) from None
        except OSError as exc:
            raise _error(exc, path) from exc
        shutil.rmtree(trash, ignore_errors=True)


class _Reader(io.BufferedReader):
    """A buffered file (1 MiB reads) whose read errors are StorageErrors.
    Large reads run through :func:`offload`: a read that misses the page
    cache waits for the disk without stalling other requests."""

    def __init__(self, raw: io.FileIO, path: str):
        super().__init__(raw, READ_BUFFER)
        self._path = path

    def read(self, n: int | None = -1) -> bytes:
        try:
            if n is None or n < 0 or n >= OFFLOAD_READ:
                return offload(io.BufferedReader.read, self, n)
            return super().read(n)
        except OSError as exc:
            raise _error(exc, self._path) from exc


class _Writer(FileWriter):
    """New files go to a temp file renamed into place on commit; appends go
    straight to the file and are cut back to their old length on cancel.

    Small writes are buffered up to :data:`WRITE_BUFFER` by hand rather than
    with a ``BufferedWriter``, so a cancelled append can drop the buffer
    instead of flushing it after the truncation.
    """

    def __init__(self, driver: FilesystemDriver, path: str, append: bool):
        self._driver = driver
        self._path = path
        self._buffer = bytearray()
        self._fd = -1
        self._tmp: str | None = None
        self._done = True  # until the file is open
        if append:
            try:
                self._fd = os.open(driver.root + path, os.O_WRONLY | os.O_APPEND | _O_CLOEXEC)
            except (*_NOT_FOUND, IsADirectoryError):
                raise PathNotFound(path=path) from None
            except OSError as exc:
                raise _error(exc, path) from exc
            self._base = os.fstat(self._fd).st_size
        else:
            try:
                self._tmp, self._fd = driver._mkstemp()
            except OSError as exc:
                raise _error(exc, path) from exc
            self._base = 0
        self._size = self._base
        self._on_disk = self._kicked = self._base  # file length written; writeback started up to
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        view = memoryview(data).cast("B")
        n = len(view)
        try:
            if n >= WRITE_BUFFER:
                self._flush()
                self._write_out(view)
            else:
                self._buffer += view
                if len(self._buffer) >= WRITE_BUFFER:
                    self._flush()
        except OSError as exc:
            self._fail()
            raise _error(exc, self._path) from exc
        self._size += n
        return n

    def _flush(self) -> None:
        if self._buffer:
            buffer, self._buffer = self._buffer, bytearray()
            self._write_out(buffer)

    def _write_out(self, data) -> None:
        """Write ``data`` at the end of the file (in the thread pool),
        starting the writeback of every :data:`WRITEBACK_STEP` written."""
        end = self._on_disk + len(data)
        start, count = self._kicked, 0
        if end - start >= WRITEBACK_STEP:
            count, self._kicked = end - start, end
        offload(_write_out, self._fd, data, start, count)
        self._on_disk = end

    @property
    def size(self) -> int:
        return self._size

    def commit(self) -> None:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        try:
            self._flush()
            offload(os.fsync, self._fd)  # seconds for a large blob
            if self._tmp is not None:
                os.close(self._fd)
                self._fd = -1
                offload(self._driver._rename_into, self._tmp, self._driver.root + self._path)
                self._tmp = None
        except BaseException as exc:
            self._fail()
            if isinstance(exc, OSError):
                raise _error(exc, self._path) from exc
            raise
        self._finish()

    def cancel(self) -> None:
        if not self._done:
            self._fail()

    def close(self) -> None:
        self.cancel()

    def __del__(self) -> None:
        if not self._done:  # dropped without close(): same as cancel()
            self._fail()

    def _fail(self) -> None:
        """Discard this writer's bytes and release the file."""
        self._buffer = bytearray()
        try:
            if self._tmp is not None:
                os.unlink(self._tmp)
            elif self._fd >= 0:
                os.ftruncate(self._fd, self._base)
        except OSError:
            pass
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
