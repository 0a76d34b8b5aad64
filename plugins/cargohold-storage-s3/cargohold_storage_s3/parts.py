"""Planning the parts of a multipart upload that assembles objects (or
ranges of them) into one new object server-side.

S3 requires every part but the last to be at least 5 MiB.  A range of at
least that size is copied by S3 itself (``UploadPartCopy``); smaller pieces,
such as the segments left by small ``PATCH`` chunks, are merged: their bytes
are read into a buffer of at most :data:`MIN_PART_SIZE` and uploaded as one
part.  Only those small pieces (and the few bytes needed to top a buffer up)
ever travel through the registry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from cargohold_storage_s3.layout import Piece
from cargohold_storage_s3.settings import MAX_PART_SIZE, MIN_PART_SIZE

#: S3 allows at most this many parts in one upload.
MAX_PARTS = 10000


@dataclasses.dataclass(frozen=True)
class Range:
    """Bytes ``[start, end)`` of ``piece``."""

    piece: Piece
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Part:
    """One part: a single range copied server-side (``copy``), or ranges
    read and uploaded as one buffer."""

    ranges: tuple[Range, ...]
    copy: bool

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)


def plan(pieces: Sequence[Piece], copy_chunk: int, min_part: int = MIN_PART_SIZE) -> list[Part]:
    """Split the concatenation of ``pieces`` into parts, in order.  Copied
    parts are ``copy_chunk`` bytes (raised as needed to stay within
    :data:`MAX_PARTS`), or a whole remaining range rather than leave a tail
    below ``min_part``; buffered parts are exactly ``min_part`` bytes except
    the last part.  Buffered parts hold only bytes of pieces smaller than
    ``min_part`` (or what tops a buffer up to it)."""
    total = sum(p.size for p in pieces)
    copy_chunk = max(copy_chunk, min_part, math.ceil(total / (MAX_PARTS // 2)))
    parts: list[Part] = []
    pending: list[Range] = []
    pending_size = 0
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        pos = 0
        while pos < piece.size:
            remaining = piece.size - pos
            # The last part may be small, so the end of the last piece is copied too.
            if pending_size == 0 and (remaining >= min_part or last):
                n = min(remaining, copy_chunk)
                if 0 < remaining - n < min_part and remaining <= MAX_PART_SIZE:
                    n = remaining  # no small tail to merge later
                parts.append(Part((Range(piece, pos, pos + n),), copy=True))
                pos += n
                continue
            take = min(remaining, min_part - pending_size)
            pending.append(Range(piece, pos, pos + take))
            pending_size += take
            pos += take
            if pending_size >= min_part:
                parts.append(Part(tuple(pending), copy=False))
                pending, pending_size = [], 0
    if pending:
        parts.append(Part(tuple(pending), copy=False))
    if len(parts) > MAX_PARTS:
        raise ValueError(f"{len(parts)} parts needed, S3 allows {MAX_PARTS}")
    return parts
