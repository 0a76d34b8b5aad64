"""How the driver lays files out in the bucket.

Path ``/a/b`` is the object ``<prefix>a/b``.  S3 objects cannot be appended
to, so an append writer stores its bytes as a *segment*: a separate object
``<key>!<generation>!<seq>`` committed on its own.  The file's content is the
base object followed by its segments in sequence order; ``move`` assembles
them server-side into one plain object (the blob store only ever holds plain
objects).

* ``!`` cannot occur in a path component, so no path maps to a segment key;
  and it sorts before every character a component may hold, so one
  ``ListObjectsV2`` with the base key as prefix returns the base object
  first, directly followed by all of its segments.
* ``<generation>`` is derived from the base object's ETag and modification
  time.  Replacing the base (``put_content``, a new-file writer) changes it,
  so segments of the old content stop counting at that instant: a reader
  never sees new base bytes followed by old appended ones.  Such stale
  segments are removed by the next append, ``move`` or ``delete``.
* ``<seq>`` is zero-padded so that key order is append order.

Only a base object carrying the user metadata :data:`APPENDABLE` can have
segments: new-file writers set it (uploads start with one), and the first
append to a file ``put_content`` wrote copies the object onto itself with it.
Every other object is a whole file on its own, so reading, stat-ing or
deleting it takes one request on its key (``GetObject``, ``HeadObject``,
``DeleteObject``) and no listing; ``move`` stores plain objects.
"""

from __future__ import annotations

import dataclasses
import hashlib

SEPARATOR = "!"
#: User metadata (``x-amz-meta-cargohold-appendable: 1``) of a base object
#: that may have segments.
APPENDABLE = "cargohold-appendable"
APPENDABLE_METADATA = {APPENDABLE: "1"}
SEQ_DIGITS = 10


@dataclasses.dataclass(frozen=True)
class Piece:
    """One stored object of a file: its key, size, ETag and modification time."""

    key: str
    size: int
    etag: str
    modtime: float


@dataclasses.dataclass
class StoredFile:
    """What one listing found at a key: the base object (``None`` if there
    is no file), its live segments in order, the keys of stale segments, the
    highest segment number in use, and whether keys below ``<key>/`` were
    seen (the key is a directory)."""

    base: Piece | None = None
    segments: list[Piece] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)
    last_seq: int = 0
    is_dir: bool = False

    @property
    def pieces(self) -> list[Piece]:
        return [self.base, *self.segments] if self.base else []

    @property
    def size(self) -> int:
        return sum(p.size for p in self.pieces)

    @property
    def modtime(self) -> float:
        return max((p.modtime for p in self.pieces), default=0.0)

    @property
    def all_keys(self) -> list[str]:
        """Every key of the file, segments (stale included) before the base."""
        return [*self.stale, *(s.key for s in self.segments), *([self.base.key] if self.base else [])]


def is_appendable(metadata: dict | None) -> bool:
    return bool(metadata) and metadata.get(APPENDABLE) == "1"


def generation(base: Piece) -> str:
    return hashlib.sha256(f"{base.etag}|{base.modtime!r}".encode()).hexdigest()[:16]


def segment_key(base: Piece, seq: int) -> str:
    return f"{base.key}{SEPARATOR}{generation(base)}{SEPARATOR}{seq:0{SEQ_DIGITS}d}"


def is_hidden(name: str) -> bool:
    """Whether a key (or a name below a listed prefix) is a segment."""
    return SEPARATOR in name


class Keys:
    """Maps paths to keys under ``prefix`` (``""`` or ``a/b/``) and back."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def key(self, path: str) -> str:
        return self.prefix + path[1:]

    def dir_prefix(self, path: str) -> str:
        """The key prefix of everything below the directory ``path``."""
        return self.prefix if path == "/" else self.prefix + path[1:] + "/"

    def path(self, key: str) -> str:
        return "/" + key[len(self.prefix):]


def collect(key: str, entries) -> StoredFile:
    """Build a :class:`StoredFile` from ``ListObjectsV2`` entries (in key
    order) of the prefix ``key``.  Stops being interested at the first entry
    that is neither the base nor one of its segments."""
    found = StoredFile()
    marker = key + SEPARATOR
    live = None
    for entry in entries:
        name = entry["Key"]
        piece = Piece(name, entry["Size"], entry.get("ETag", "").strip('"'), entry["LastModified"].timestamp())
        if name == key:
            found.base = piece
            live = generation(piece)
        elif name.startswith(marker):
            gen, _, seq = name[len(marker):].partition(SEPARATOR)
            if gen == live and seq.isdigit():
                found.segments.append(piece)
                found.last_seq = max(found.last_seq, int(seq))
            else:
                found.stale.append(name)
        elif name.startswith(key + "/"):
            found.is_dir = True
            break
        elif name > key + "/":
            break
    return found
