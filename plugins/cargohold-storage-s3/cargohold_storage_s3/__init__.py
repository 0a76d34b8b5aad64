"""Amazon S3 (and S3-compatible) storage for cargohold.

Configure with::

    storage:
      s3:
        bucket: registry
        region: us-east-1
        rootdirectory: /cargohold

See the plugin's README for every key, and
:class:`cargohold_storage_s3.driver.S3Driver` for how files are stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cargohold import hookimpl
from cargohold_storage_s3.settings import SCHEMA, SECTION, S3Settings, parse_settings

if TYPE_CHECKING:
    from cargohold_storage_s3.driver import S3Driver

__all__ = ["S3Driver", "S3Settings", "create_driver", "parse_settings"]


def create_driver(params: dict) -> S3Driver:
    """Build the driver from the ``storage.s3`` config section and check the
    bucket.  Raises ``ValueError`` naming the key for a bad setting, a
    missing bucket or refused credentials."""
    # boto3 is imported only when S3 is the configured storage: every
    # installed plugin is loaded at start, and its ~8 MiB would otherwise
    # sit in every registry process.
    from cargohold_storage_s3.driver import S3Driver

    driver = S3Driver(parse_settings(params))
    driver.check_bucket()
    return driver


@hookimpl
def cargohold_storage_drivers():
    """The ``s3`` driver, selected by a ``storage.s3`` section."""
    return {"s3": create_driver}


@hookimpl
def cargohold_config_schema():
    """The keys and types of ``storage.s3`` (see :data:`.settings.SCHEMA`)."""
    return {SECTION: SCHEMA}


def __getattr__(name: str):
    if name == "S3Driver":  # imported on first use, see create_driver
        from cargohold_storage_s3.driver import S3Driver

        return S3Driver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
