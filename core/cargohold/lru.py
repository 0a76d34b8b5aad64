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
