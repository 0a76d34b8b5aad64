"""The ``storage.azure`` configuration section: its schema, and its
validation into :class:`AzureSettings`.

Every problem raises ``ValueError`` naming the dotted key at fault, so a bad
configuration stops start-up with a message such as
``storage.azure.accountkey: required with storage.azure.accountname``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit

from cargohold.config import Duration, OneOf, Secret, Size, check_driver_params, text_setting as _text

SECTION = "storage.azure"

MiB = 1 << 20
#: Azure's limits for one staged block, and a floor that keeps the block count
#: of large blobs (at most 50,000 per blob) reasonable.
MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 4000 * MiB

CREDENTIAL_TYPES = ("shared_key", "client_secret", "default_credentials")

SCHEMA: dict[str, Any] = {
    "accountname": str,
    "accountkey": Secret,
    "container": str,
    "realm": str,
    "serviceurl": str,
    "connectionstring": Secret,
    "sastoken": Secret,
    "credentials": {
        "type": OneOf(*CREDENTIAL_TYPES),
        "clientid": str,
        "tenantid": str,
        "secret": Secret,
    },
    "rootdirectory": str,
    "redirectexpiry": Duration,
    "blocksize": Size,
    "maxretries": int,
    "retrydelay": Duration,
    "connecttimeout": Duration,
    "readtimeout": Duration,
}

DEFAULT_REALM = "core.windows.net"

# A container name: 3-63 characters, lower-case letters, digits and single
# hyphens, starting and ending with a letter or digit.
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


@dataclasses.dataclass(frozen=True)
class AzureSettings:
    """A validated ``storage.azure`` section.  Exactly one way to
    authenticate is set: ``connectionstring``; ``accountname`` with
    ``accountkey`` (shared key); ``sastoken``; or ``credentials.type``
    ``client_secret``/``default_credentials`` (Microsoft Entra ID).
    ``account_url`` is the blob service endpoint, unless the connection
    string carries it."""

    container: str
    account_url: str | None = None
    accountname: str | None = None
    accountkey: str | None = None
    connectionstring: str | None = None
    sastoken: str | None = None
    credential_type: str | None = None
    clientid: str | None = None
    tenantid: str | None = None
    secret: str | None = None
    rootdirectory: str = ""
    redirectexpiry: float = 20 * 60.0
    blocksize: int = 8 * MiB
    maxretries: int = 3
    retrydelay: float = 0.5
    connecttimeout: float = 5.0
    readtimeout: float = 30.0

    def __repr__(self) -> str:  # keeps secrets out of logs and tracebacks
        return f"AzureSettings(container={self.container!r}, account_url={self.account_url!r})"


def _key(name: str) -> str:
    return f"{SECTION}.{name}"


def _or_default(values: dict, name: str):
    value = values.get(name)
    return getattr(AzureSettings, name) if value is None else value


def parse_settings(params: dict) -> AzureSettings:
    """Validate the ``storage.azure`` section (already type-checked by the
    core when it comes from a config file, raw when a test passes a dict)
    into :class:`AzureSettings`.  Raises ``ValueError`` naming the key."""
    values = check_driver_params(params, SCHEMA, SECTION)
    container = _text(values, "container")
    if container is None:
        raise ValueError(f"{_key('container')}: required, the blob container to keep the registry's data in")
    if not _CONTAINER.fullmatch(container):
        raise ValueError(f"{_key('container')}: {container!r} is not a valid container name "
                         "(3-63 lower-case letters, digits and single hyphens)")

    accountname = _text(values, "accountname")
    accountkey = _text(values, "accountkey")
    connectionstring = _text(values, "connectionstring")
    sastoken = _text(values, "sastoken")
    realm = _text(values, "realm")
    serviceurl = _text(values, "serviceurl")
    credentials = values.get("credentials") or {}
    credential_type = _text(credentials, "type")
    if credential_type == "shared_key":
        credential_type = None  # the top-level accountname/accountkey

    if accountname is not None and not _ACCOUNT.fullmatch(accountname):
        raise ValueError(f"{_key('accountname')}: {accountname!r} is not a storage account name "
                         "(3-24 lower-case letters and digits)")
    if accountkey is not None:
        try:
            base64.b64decode(accountkey, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{_key('accountkey')}: not a base64 account key") from None

    # Exactly one way to authenticate.
    ways = [name for name, chosen in (
        ("connectionstring", connectionstring is not None),
        ("accountkey", accountkey is not None),
        ("sastoken", sastoken is not None),
        ("credentials", credential_type is not None),
    ) if chosen]
    if len(ways) > 1:
        raise ValueError(f"{_key(ways[1])}: conflicts with {_key(ways[0])}; configure one way to "
                         "authenticate (connectionstring, accountname + accountkey, sastoken or credentials)")
    if not ways:
        if accountname is not None:
            raise ValueError(f"{_key('accountkey')}: required with {_key('accountname')} "
                             "(or set sastoken or credentials.type)")
        raise ValueError(f"{SECTION}: no credentials; set connectionstring, accountname + accountkey, "
                         "sastoken or credentials.type")
    if connectionstring is not None:
        for name, value in (("accountname", accountname), ("realm", realm), ("serviceurl", serviceurl)):
            if value is not None:
                raise ValueError(f"{_key(name)}: conflicts with {_key('connectionstring')}, "
                                 "which already names the account and its endpoint")
        _check_connection_string(connectionstring)
    elif accountkey is not None and accountname is None:
        raise ValueError(f"{_key('accountname')}: required with {_key('accountkey')}")

    if credential_type == "client_secret":
        for name in ("clientid", "tenantid", "secret"):
            if _text(credentials, name) is None:
                raise ValueError(f"{_key('credentials.' + name)}: required with credentials.type client_secret")
    elif credential_type is None and any(_text(credentials, n) for n in ("clientid", "tenantid", "secret")):
        raise ValueError(f"{_key('credentials.type')}: required with credentials.clientid, tenantid and secret "
                         "(client_secret)")

    account_url = None
    if connectionstring is None:
        if realm is not None and serviceurl is not None:
            raise ValueError(f"{_key('realm')}: conflicts with {_key('serviceurl')}; set one of them")
        if serviceurl is not None:
            parts = urlsplit(serviceurl)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{_key('serviceurl')}: expected an http(s) URL such as "
                                 f"https://myaccount.blob.core.windows.net, got {serviceurl!r}")
            account_url = serviceurl.rstrip("/")
        elif accountname is not None:
            account_url = f"https://{accountname}.blob.{realm or DEFAULT_REALM}"
        else:
            raise ValueError(f"{_key('accountname')}: required to locate the account "
                             f"(or set {_key('serviceurl')})")

    rootdirectory = (_text(values, "rootdirectory") or "").strip("/")
    if rootdirectory and ("~" in rootdirectory or "//" in rootdirectory):
        raise ValueError(f"{_key('rootdirectory')}: {rootdirectory!r} may not contain '~' or empty components")

    blocksize = _or_default(values, "blocksize")
    if not MIN_BLOCK_SIZE <= blocksize <= MAX_BLOCK_SIZE:
        raise ValueError(f"{_key('blocksize')}: must be between 1MiB and 4000MiB, got {blocksize}")
    redirectexpiry = _or_default(values, "redirectexpiry")
    if redirectexpiry < 1:
        raise ValueError(f"{_key('redirectexpiry')}: must be at least 1s, got {params.get('redirectexpiry')!r}")
    maxretries = _or_default(values, "maxretries")
    if not 0 <= maxretries <= 20:
        raise ValueError(f"{_key('maxretries')}: must be between 0 and 20, got {maxretries}")
    timeouts = {}
    for name in ("connecttimeout", "readtimeout"):
        timeouts[name] = _or_default(values, name)
        if timeouts[name] <= 0:
            raise ValueError(f"{_key(name)}: must be positive, got {params.get(name)!r}")

    return AzureSettings(
        container=container,
        account_url=account_url,
        accountname=accountname,
        accountkey=accountkey,
        connectionstring=connectionstring,
        sastoken=sastoken.lstrip("?") if sastoken else None,
        credential_type=credential_type,
        clientid=_text(credentials, "clientid"),
        tenantid=_text(credentials, "tenantid"),
        secret=_text(credentials, "secret"),
        rootdirectory=rootdirectory,
        redirectexpiry=redirectexpiry,
        blocksize=blocksize,
        maxretries=maxretries,
        retrydelay=_or_default(values, "retrydelay"),
        **timeouts,
    )


def _check_connection_string(text: str) -> None:
    fields = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{_key('connectionstring')}: expected Name=value pairs separated by ';'")
        fields[name.strip().lower()] = value
    if "blobendpoint" not in fields and "accountname" not in fields:
        raise ValueError(f"{_key('connectionstring')}: names neither AccountName nor BlobEndpoint")
