"""A small, bounded least-recently-used map (greenlet safe: no yields inside)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LRU:
    """``get``/``put``/``pop`` with at most ``capacity`` entries."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data: OrderedDict = OrderedDict()

    def get(self, key, default=None) -> Any:
        try:
            self._data.move_to_end(key)
            return self._data[key]
        except KeyError:
            return default

    def put(self, key, value) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def pop(self, key, default=None) -> Any:
        return self._data.pop(key, default)

    def __len__(self) -> int:
        return len(self._data)


_MISSING = object()


class SizedLRU(LRU):
    """An :class:`LRU` bounded by the total size of its values as well:
    ``put`` takes each value's size in bytes, as the caller weighs it, and
    the least recently used entries go until the total is at most
    ``max_bytes`` (and the count at most ``capacity``).  A value larger
    than ``max_bytes`` is not kept; ``max_bytes=0`` keeps nothing.
    ``bytes`` is the current total."""

    def __init__(self, max_bytes: int, capacity: int = 1 << 62):
        super().__init__(capacity)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._sizes: dict = {}

    def put(self, key, value, size: int = 0) -> None:
        self.pop(key)
        if size > self.max_bytes:
            return
        self._data[key] = value
        self._sizes[key] = size
        self.bytes += size
        while self.bytes > self.max_bytes or len(self._data) > self.capacity:
            old, _ = self._data.popitem(last=False)
            self.bytes -= self._sizes.pop(old)

    def pop(self, key, default=None) -> Any:
        value = self._data.pop(key, _MISSING)
        if value is _MISSING:
            return default
        self.bytes -= self._sizes.pop(key)
        return value
