"""The Azure Blob Storage driver."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Iterator

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobPrefix, ContainerClient

from cargohold.storage.driver import (
    FileExists,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
)
from cargohold_storage_azure.client import Signer
from cargohold_storage_azure.errors import (
    TRANSPORT_ERRORS,
    error_code,
    is_blob_not_found,
    to_storage_error,
    translated,
)
from cargohold_storage_azure.streams import (
    BLOCK_ID_LENGTH,
    BlobReader,
    BlockWriter,
    new_block_id,
)

log = logging.getLogger(__name__)

# Temporary blobs live under <root>/~tmp/.  "~" cannot occur in a path
# component, so no path maps there and listings skip any name containing it.
TMP_DIR = "~tmp"
STALE_TMP_SECONDS = 24 * 3600
# A one-block put loses its staged block when a concurrent writer of the same
# blob commits first; it stages again.  Bounded only as a safeguard.
PUT_ATTEMPTS = 20
#: Reads of a small file while it keeps being replaced under them.
GET_ATTEMPTS = 5
# Copies inside one account normally finish at once; a pending one is polled.
COPY_POLL_SECONDS = (0.05, 1.0)
COPY_TIMEOUT = 600.0


def _modtime(properties) -> float:
    last = getattr(properties, "last_modified", None)
    return last.timestamp() if last is not None else 0.0


class AzureDriver(StorageDriver):
    """Stores path ``/a/b`` as the block blob ``<rootdirectory>/a/b`` of one
    container.  Directories are virtual (``/``-delimited name prefixes): a
    directory exists while a blob lies below it, and its ``stat`` modtime
    is 0.0 (unknown).

    Atomicity: ``put_content`` and small writer commits stage one block on
    the target and commit a one-block list (retrying when a concurrent
    commit discarded the staged block); larger writers stage on a temporary
    blob and copy it over the target server-side, so the target switches to
    the new content all at once and concurrent writers never disturb each
    other.  ``move`` is a server-side copy then a delete.  Appends stage new
    blocks on the target and commit its old block list plus the new blocks.

    ``redirect_url`` signs a read-only SAS URL valid for ``redirectexpiry``
    seconds when the credentials hold an account key (``signer``), and
    returns ``None`` otherwise.  Several processes may share a container.
    """

    name = "azure"

    def __init__(self, container: ContainerClient, rootdirectory: str = "", *, blocksize: int = 8 << 20,
                 signer: Signer | None = None, redirectexpiry: float = 1200.0):
        self.container = container
        root = rootdirectory.strip("/")
        self.prefix = f"{root}/" if root else ""  # of every blob name
        self.blocksize = blocksize
        self.redirectexpiry = redirectexpiry
        self._signer = signer

    def __repr__(self) -> str:
        return f"AzureDriver({self.container.url!r}, prefix={self.prefix!r})"

    # -- names -------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The blob name of ``path``."""
        return self.prefix + path[1:]

    def _dir_prefix(self, path: str) -> str:
        """The name prefix of everything below the directory ``path``."""
        return self.prefix if path == "/" else self.key(path) + "/"

    def _path_of(self, name: str) -> str:
        return "/" + name[len(self.prefix):].rstrip("/")

    def temp_key(self) -> str:
        return f"{self.prefix}{TMP_DIR}/{uuid.uuid4().hex}"

    def _blob(self, key: str):
        return self.container.get_blob_client(key)

    # -- start-up ------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the container if it is missing and remove temporary blobs a
        crashed process left behind more than a day ago.  Raises
        :class:`StorageError` if the service cannot be used."""
        # Listing first: it needs only the rights the registry needs anyway
        # (a container SAS may not create containers).
        temps = self.container.list_blobs(name_starts_with=f"{self.prefix}{TMP_DIR}/")
        with translated(None):
            try:
                temps = list(temps)
            except ResourceNotFoundError as exc:
                if error_code(exc) != "ContainerNotFound":
                    raise
                try:
                    self.container.create_container()
                except ResourceExistsError:
                    pass  # created concurrently by another worker
                temps = []
        cutoff = time.time() - STALE_TMP_SECONDS
        for blob in temps:
            if _modtime(blob) < cutoff:
                self.delete_temp(blob.name, committed=True)

    # -- building blocks, shared with the writers --------------------------------

    def stage_block(self, key: str, block_id: str, data: bytes, path: str) -> None:
        with translated(path):
            self._blob(key).stage_block(block_id, data, length=len(data))

    def commit_blocks(self, key: str, block_ids: list[str], path: str) -> None:
        with translated(path):
            self._blob(key).commit_block_list([BlobBlock(block_id) for block_id in block_ids])

    def put_block(self, key: str, data: bytes, path: str) -> None:
        """Replace the blob ``key`` with ``data`` in one committed block, so
        that appends can later extend its block list."""
        blob = self._blob(key)
        with translated(path):
            if not data:  # blocks cannot be empty; an empty list is an empty blob
                blob.commit_block_list([])
                return
            for _ in range(PUT_ATTEMPTS):
                block_id = new_block_id()
                blob.stage_block(block_id, data, length=len(data))
                try:
                    blob.commit_block_list([BlobBlock(block_id)])
                    return
                except HttpResponseError as exc:
                    if error_code(exc) != "InvalidBlockList":
                        raise
                    # A concurrent commit or delete discarded our block: again.
        raise StorageError("gave up after repeated concurrent replacements", path=path)

    def committed_blocks(self, path: str) -> tuple[list[str], int]:
        """The block ids and total size of the blob at ``path``, for an
        append.  A blob written by other means (one ``Put Blob``, other
        block ids) has its content restaged as blocks of our own first."""
        blob = self._blob(self.key(path))
        with translated(path):
            committed, _ = blob.get_block_list("committed")
            if committed and all(len(b.id) == BLOCK_ID_LENGTH for b in committed):
                return [b.id for b in committed], sum(b.size for b in committed)
            size = blob.get_blob_properties().size
        if size == 0:
            return [], 0
        return self._restage(path, size), size

    def _restage(self, path: str, size: int) -> list[str]:
        blocks = []
        with self.reader(path) as reader:
            while True:
                data = reader.read(self.blocksize)
                if not data:
                    break
                block_id = new_block_id()
                self.stage_block(self.key(path), block_id, data, path)
                blocks.append(block_id)
        return blocks

    def copy(self, src_key: str, dst_key: str, path: str) -> None:
        """Copy blob ``src_key`` over ``dst_key`` on the service (no bytes
        pass through this process) and wait until the copy is complete."""
        dst = self._blob(dst_key)
        with translated(path):
            result = dst.start_copy_from_url(self._blob(src_key).url)
            status, copy_id = result.get("copy_status"), result.get("copy_id")
            deadline = time.monotonic() + COPY_TIMEOUT
            delay = COPY_POLL_SECONDS[0]
            while status == "pending":
                if time.monotonic() > deadline:
                    dst.abort_copy(copy_id)
                    raise StorageError("server-side copy did not finish in time", path=path)
                time.sleep(delay)
                delay = min(delay * 2, COPY_POLL_SECONDS[1])
                copy = dst.get_blob_properties().copy
                if copy.id != copy_id:
                    raise StorageError("server-side copy was replaced by another", path=path)
                status = copy.status
        if status != "success":
            raise StorageError(f"server-side copy ended {status}", path=path)

    def delete_temp(self, key: str, committed: bool) -> None:
        """Remove a temporary blob, best effort: one that stays behind is
        invisible and removed at a later start-up.  Blocks never committed
        cannot be deleted directly: committing an empty list drops them."""
        blob = self._blob(key)
        try:  # no retries: this runs on error paths, often with the service down
            if not committed:
                blob.commit_block_list([], retry_total=0)
            blob.delete_blob(retry_total=0)
        except (AzureError, *TRANSPORT_ERRORS) as exc:
            log.debug("could not remove temporary blob %s: %s", key, exc)

    # -- the contract ----------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        """The whole blob, one version of it: when the blob is replaced
        between reading its properties and its bytes (the service answers
        412 to the pinned read), it is read again, so a concurrent
        ``put_content`` gives the old content or the new, never an error."""
        for attempt in range(GET_ATTEMPTS):
            try:
                with self.reader(path) as reader:
                    return reader.read()
            except StorageError as exc:
                if attempt + 1 == GET_ATTEMPTS or error_code(exc.__cause__) != "ConditionNotMet":
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def put_content(self, path: str, data: bytes) -> None:
        self.put_block(self.key(path), bytes(data), path)

    def create(self, path: str, data: bytes) -> None:
        """One Put Blob with ``If-None-Match: *`` (``overwrite=False``): the
        service refuses it with 409 when the blob exists."""
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        with translated(path):
            try:
                self._blob(self.key(path)).upload_blob(bytes(data), overwrite=False)
            except (ResourceExistsError, ResourceModifiedError):
                raise FileExists(path=path) from None

    def reader(self, path: str, offset: int = 0) -> BlobReader:
        blob = self._blob(self.key(path))
        with translated(path):
            properties = blob.get_blob_properties()
        if offset < 0 or offset > properties.size:
            raise InvalidOffset(f"offset {offset} outside 0..{properties.size}", path=path)
        return BlobReader(blob, path, properties.size, properties.etag, offset)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return BlockWriter(self, path, append)

    def stat(self, path: str) -> FileInfo:
        if path == "/":
            return FileInfo("/", 0, 0.0, True)
        try:
            with translated(path):
                properties = self._blob(self.key(path)).get_blob_properties()
            return FileInfo(path, properties.size, _modtime(properties), False)
        except PathNotFound:
            pass
        with translated(path):
            below = self.container.list_blobs(name_starts_with=self._dir_prefix(path), results_per_page=1)
            if next(iter(below), None) is None:
                raise PathNotFound(path=path)
        return FileInfo(path, 0, 0.0, True)

    def _children(self, path: str) -> list[FileInfo]:
        """The direct children of directory ``path`` from one listing."""
        children = []
        with translated(path):
            for item in self.container.walk_blobs(name_starts_with=self._dir_prefix(path) or None, delimiter="/"):
                child = self._path_of(item.name)
                if "~" in child:
                    continue  # a temporary blob
                if isinstance(item, BlobPrefix):
                    children.append(FileInfo(child, 0, 0.0, True))
                else:
                    children.append(FileInfo(child, item.size, _modtime(item), False))
        children.sort(key=lambda info: info.path)
        return children

    def list(self, path: str) -> list[str]:
        children = self._children(path)
        if not children and path != "/":
            raise PathNotFound(path=path)
        return [info.path for info in children]

    def walk(self, path: str) -> Iterator[FileInfo]:
        children = self._children(path)
        if not children and path != "/":
            raise PathNotFound(path=path)
        return self._walk(children)

    def _walk(self, children: list[FileInfo]) -> Iterator[FileInfo]:
        for info in children:
            yield info
            if info.is_dir:
                # A directory emptied meanwhile lists as nothing: skipped.
                yield from self._walk(self._children(info.path))

    def move(self, src: str, dst: str) -> None:
        try:
            self.copy(self.key(src), self.key(dst), dst)
        except PathNotFound:  # a 404 from Copy Blob: its source is missing
            raise PathNotFound(path=src) from None
        with translated(src):
            try:
                self._blob(self.key(src)).delete_blob()
            except HttpResponseError as exc:
                if not is_blob_not_found(exc):  # gone already: a concurrent move won
                    raise

    def delete(self, path: str) -> None:
        with translated(path):
            try:
                self._blob(self.key(path)).delete_blob()
                return
            except HttpResponseError as exc:
                if not is_blob_not_found(exc):
                    raise
            found = False
            for blob in self.container.list_blobs(name_starts_with=self._dir_prefix(path)):
                found = True
                try:
                    self._blob(blob.name).delete_blob()
                except HttpResponseError as exc:
                    if not is_blob_not_found(exc):  # deleted concurrently: fine
                        raise
        if not found:
            raise PathNotFound(path=path)

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if self._signer is None or method not in ("GET", "HEAD"):
            return None
        try:
            return self._signer(self.key(path), self.redirectexpiry)
        except (AzureError, ValueError) as exc:
            raise to_storage_error(exc, path) from exc

    def close(self) -> None:
        try:
            self.container.close()
        except (AzureError, *TRANSPORT_ERRORS):
            pass
