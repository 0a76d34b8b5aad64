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

from cargohold import hookimpl
from cargohold_storage_s3.driver import S3Driver
from cargohold_storage_s3.settings import SCHEMA, SECTION, S3Settings, parse_settings

__all__ = ["S3Driver", "S3Settings", "create_driver", "parse_settings"]


def create_driver(params: dict) -> S3Driver:
    """Build the driver from the ``storage.s3`` config section and check the
    bucket.  Raises ``ValueError`` naming the key for a bad setting, a
    missing bucket or refused credentials."""
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
