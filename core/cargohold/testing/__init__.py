"""Helpers for testing cargohold and its plugins.

* :mod:`cargohold.testing.storage`: ``StorageDriverSuite``, the one test suite
  every storage driver runs against itself.
* :mod:`cargohold.testing.server`: ``LiveRegistry``, a real ``cargohold serve``
  process on a free loopback port, for black-box and end-to-end tests.
"""
