"""Readiness: can this registry process serve requests right now?

One check, the storage backend: a ``list('/')`` of the driver, which every
driver answers cheaply (a root that does not exist yet, on a new registry,
counts as reachable).  It must answer within :data:`STORAGE_TIMEOUT`
seconds; drivers that wait on sockets are interrupted then, under gevent.
"""

from __future__ import annotations

import dataclasses
import logging

import gevent

from cargohold.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("cargohold.health")

#: Seconds the storage check may take before it counts as failed.
STORAGE_TIMEOUT = 5.0


@dataclasses.dataclass
class CheckResult:
    """One check's outcome: ``error`` is ``None`` when it passed, else a short
    description; ``detail`` is the underlying error's message (for
    operators: it may name paths or hosts)."""

    name: str
    error: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_storage(driver: StorageDriver, timeout: float | None = None) -> CheckResult:
    """List the storage root within ``timeout`` seconds (default
    :data:`STORAGE_TIMEOUT`)."""
    timeout = STORAGE_TIMEOUT if timeout is None else timeout
    name = getattr(driver, "name", "storage")
    try:
        with gevent.Timeout(timeout):
            try:
                driver.list("/")
            except PathNotFound:
                pass  # nothing stored yet
    except gevent.Timeout:
        log.error("readiness: the %s storage backend did not answer within %gs", name, timeout)
        return CheckResult("storage", f"the {name} storage backend did not answer within {timeout:g}s")
    except Exception as e:
        log.error("readiness: the %s storage backend failed: %s", name, e)
        return CheckResult("storage", f"the {name} storage backend failed ({type(e).__name__})", str(e))
    return CheckResult("storage")


def readiness(driver: StorageDriver, timeout: float | None = None) -> list[CheckResult]:
    """Every readiness check's result."""
    return [check_storage(driver, timeout)]
