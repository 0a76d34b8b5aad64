"""The ``storage.s3`` configuration section: its schema, and its validation
into :class:`S3Settings`.

Key names follow the reference registry's S3 driver.  Every problem raises
``ValueError`` naming the dotted key at fault, so a bad configuration stops
start-up with a message such as ``storage.s3.secretkey: required with
storage.s3.accesskey``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit

from cargohold.config import Duration, Secret, Size, check_driver_params, text_setting as _text

SECTION = "storage.s3"

MiB = 1 << 20
GiB = 1 << 30
#: S3's bounds for one part of a multipart upload (the last part may be smaller).
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
#: A presigned URL signed with Signature Version 4 lives at most a week.
MAX_REDIRECT_EXPIRY = 7 * 24 * 3600.0

STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER_IR", "EXPRESS_ONEZONE", "NONE",
)

SCHEMA: dict[str, Any] = {
    "bucket": str,
    "region": str,
    "regionendpoint": str,
    "accesskey": str,
    "secretkey": Secret,
    "rootdirectory": str,
    "encrypt": bool,
    "keyid": str,
    "storageclass": str,
    "forcepathstyle": bool,
    "secure": bool,
    "skipverify": bool,
    "v4auth": bool,
    "chunksize": Size,
    "multipartcopychunksize": Size,
    "multipartcopymaxconcurrency": int,
    "multipartcopythresholdsize": Size,
    "redirectexpiry": Duration,
    "maxretries": int,
    "connecttimeout": Duration,
    "readtimeout": Duration,
}

# Bucket names: 3-63 characters of lower-case letters, digits, dots and
# hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# A root directory is path components as the core's path grammar allows them.
_COMPONENT = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._-]+")


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """A validated ``storage.s3`` section.

    ``endpoint_url`` is ``None`` for AWS itself (botocore derives it from the
    region).  ``prefix`` is the key prefix from ``rootdirectory``: empty, or
    components joined by ``/`` with a trailing ``/``.  Without ``accesskey``
    the default AWS credential chain (environment, shared config, instance
    or container role) is used.  Sizes are bytes, durations seconds.
    """

    bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    accesskey: str | None = None
    secretkey: str | None = None
    prefix: str = ""
    encrypt: bool = False
    keyid: str | None = None
    storageclass: str | None = "STANDARD"
    forcepathstyle: bool = False
    secure: bool = True
    skipverify: bool = False
    chunksize: int = 10 * MiB
    multipartcopychunksize: int = 32 * MiB
    multipartcopymaxconcurrency: int = 100
    multipartcopythresholdsize: int = 32 * MiB
    redirectexpiry: float = 20 * 60.0
    maxretries: int = 2
    connecttimeout: float = 5.0
    readtimeout: float = 30.0

    def __repr__(self) -> str:  # keeps credentials out of logs and tracebacks
        return f"S3Settings(bucket={self.bucket!r}, region={self.region!r}, endpoint_url={self.endpoint_url!r})"


def _key(name: str) -> str:
    return f"{SECTION}.{name}"


def _bounded(values: dict, name: str, default, low, high, unit: str = ""):
    value = values.get(name)
    if value is None:
        return default
    if not low <= value <= high:
        raise ValueError(f"{_key(name)}: must be between {low}{unit} and {high}{unit}, got {value}{unit}")
    return value


def parse_settings(params: dict) -> S3Settings:
    """Validate the ``storage.s3`` section into :class:`S3Settings`.  Values
    may be raw (strings from the environment, ``10MiB``) or already coerced
    by the core.  Raises ``ValueError`` naming the first key at fault."""
    values = check_driver_params(params, SCHEMA, SECTION)

    bucket = _text(values, "bucket")
    if bucket is None:
        raise ValueError(f"{_key('bucket')}: required, the bucket to keep the registry's data in")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{_key('bucket')}: {bucket!r} is not a valid bucket name "
                         "(3-63 lower-case letters, digits, dots and hyphens)")

    endpoint = _text(values, "regionendpoint")
    secure = values.get("secure", True)
    if endpoint is not None:
        endpoint = _endpoint(endpoint, secure)
    region = _text(values, "region")
    if region is None:
        if endpoint is None:
            raise ValueError(f"{_key('region')}: required (e.g. us-east-1), unless "
                             f"{_key('regionendpoint')} names an S3-compatible store")
        region = "us-east-1"  # S3-compatible stores accept any region in signatures
    if not _REGION.fullmatch(region):
        raise ValueError(f"{_key('region')}: {region!r} is not a region name such as us-east-1")

    accesskey, secretkey = _text(values, "accesskey"), _text(values, "secretkey")
    if accesskey and not secretkey:
        raise ValueError(f"{_key('secretkey')}: required with {_key('accesskey')}")
    if secretkey and not accesskey:
        raise ValueError(f"{_key('accesskey')}: required with {_key('secretkey')}")

    if values.get("v4auth") is False:
        raise ValueError(f"{_key('v4auth')}: only Signature Version 4 is supported; remove the key or set it true")

    encrypt = values.get("encrypt", False)
    keyid = _text(values, "keyid")
    if keyid and not encrypt:
        raise ValueError(f"{_key('keyid')}: set {_key('encrypt')}: true to encrypt with this KMS key")

    storageclass = (_text(values, "storageclass") or "STANDARD").upper()
    if storageclass not in STORAGE_CLASSES:
        raise ValueError(f"{_key('storageclass')}: expected one of {', '.join(STORAGE_CLASSES)}, "
                         f"got {values['storageclass']!r}")

    prefix = _root_prefix(values.get("rootdirectory") or "")

    chunksize = _bounded(values, "chunksize", 10 * MiB, MIN_PART_SIZE, MAX_PART_SIZE, " bytes")
    copychunk = _bounded(values, "multipartcopychunksize", 32 * MiB, MIN_PART_SIZE, MAX_PART_SIZE, " bytes")
    threshold = _bounded(values, "multipartcopythresholdsize", 32 * MiB, 0, MAX_PART_SIZE, " bytes")
    concurrency = _bounded(values, "multipartcopymaxconcurrency", 100, 1, 1000)
    expiry = _bounded(values, "redirectexpiry", 20 * 60.0, 1.0, MAX_REDIRECT_EXPIRY, "s")
    maxretries = _bounded(values, "maxretries", 2, 0, 20)
    connecttimeout = _bounded(values, "connecttimeout", 5.0, 0.1, 600.0, "s")
    readtimeout = _bounded(values, "readtimeout", 30.0, 0.1, 3600.0, "s")

    return S3Settings(
        bucket=bucket, region=region, endpoint_url=endpoint,
        accesskey=accesskey, secretkey=secretkey,
        prefix=prefix, encrypt=encrypt, keyid=keyid,
        storageclass=None if storageclass == "NONE" else storageclass,
        forcepathstyle=values.get("forcepathstyle", False), secure=secure,
        skipverify=values.get("skipverify", False),
        chunksize=chunksize, multipartcopychunksize=copychunk,
        multipartcopymaxconcurrency=concurrency, multipartcopythresholdsize=threshold,
        redirectexpiry=expiry, maxretries=maxretries,
        connecttimeout=connecttimeout, readtimeout=readtimeout,
    )


def _endpoint(value: str, secure: bool) -> str:
    """``regionendpoint`` as a URL; a bare ``host[:port]`` gets ``https://``,
    or ``http://`` with ``secure: false``."""
    url = value if "://" in value else f"{'https' if secure else 'http'}://{value}"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{_key('regionendpoint')}: {value!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise ValueError(f"{_key('regionendpoint')}: expected a URL such as https://s3.example.com:9000, "
                         f"got {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _root_prefix(rootdirectory: str) -> str:
    components = [c for c in rootdirectory.strip().split("/") if c]
    for component in components:
        if not _COMPONENT.fullmatch(component):
            raise ValueError(f"{_key('rootdirectory')}: {rootdirectory!r} is not a path of components "
                             "made of letters, digits, '.', '_' and '-'")
    return "".join(c + "/" for c in components)
