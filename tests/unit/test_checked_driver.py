"""CheckedDriver's error path leaves nothing behind for the garbage collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import PathNotFound, StorageError
from cargohold.storage.inmemory import InMemoryDriver


class Body:
    """Stands for a request's large local (a manifest body)."""


class LeakyDriver(InMemoryDriver):
    def stat(self, path):
        raise KeyError(path)  # a foreign exception, which CheckedDriver wraps


@pytest.mark.parametrize("driver,expected", [(InMemoryDriver(), PathNotFound), (LeakyDriver(), StorageError)])
def test_an_expected_error_does_not_keep_the_callers_frames_alive(driver, expected):
    # Lookups that miss (PathNotFound) are routine.  If the raised exception
    # sits in a reference cycle with its traceback, every frame above it (and
    # their locals) lives on until the next collection: megabytes per request.
    checked = CheckedDriver(driver)

    def lookup() -> weakref.ref:
        body = Body()
        try:
            checked.stat("/missing")
        except expected:
            pass
        return weakref.ref(body)

    gc.collect()
    gc.disable()
    try:
        ref = lookup()
        assert ref() is None, "the caller's frame outlived the call: a reference cycle holds it"
    finally:
        gc.enable()
