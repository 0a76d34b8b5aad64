"""Building the Azure SDK client from :class:`AzureSettings`.

The SDK's own defaults suit batch jobs, not a registry answering clients: up
to ten retries with 15 s back-offs and a 32 MiB first read.  Here retries are
bounded (``maxretries`` × ``retrydelay``), connections and reads time out
(``connecttimeout``, ``readtimeout``), and downloads are single requests of at
most one read chunk, so a dead backend surfaces as an error within seconds
and no call buffers more than a chunk.

The SDK does its I/O through ``requests`` sockets, which ``cargohold serve``
has patched for gevent before importing anything: calls yield to other
requests while they wait on the network.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Callable

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    LinearRetry,
    generate_blob_sas,
)

from cargohold_storage_azure.settings import SECTION, AzureSettings

#: Largest body one download request returns (see the module docstring).
READ_CHUNK = 4 << 20
#: Connections kept per worker process; many greenlets share them.
POOL_SIZE = 64

#: The SDK logs every request and response at INFO; they go to this logger,
#: quiet unless its level is lowered.
HTTP_LOG = logging.getLogger("cargohold_storage_azure.http")
HTTP_LOG.setLevel(logging.WARNING)

#: ``sign(blob_name, expiry_seconds) -> url``: a read-only URL for one blob.
Signer = Callable[[str, float], str]


def _transport() -> RequestsTransport:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True)


def client_options(settings: AzureSettings) -> dict[str, Any]:
    """Keyword arguments for the SDK's clients: retries, timeouts, sizes."""
    return {
        "retry_policy": LinearRetry(
            backoff=settings.retrydelay,
            random_jitter_range=settings.retrydelay / 2,
            retry_total=settings.maxretries,
        ),
        "connection_timeout": settings.connecttimeout,
        "read_timeout": settings.readtimeout,
        "max_single_get_size": READ_CHUNK,
        "max_chunk_get_size": READ_CHUNK,
        "max_single_put_size": settings.blocksize,
        "max_block_size": settings.blocksize,
        "transport": _transport(),
        "logger": HTTP_LOG,  # for the SDK's HttpLoggingPolicy
    }


def _credential(settings: AzureSettings):
    if settings.accountkey is not None:
        return {"account_name": settings.accountname, "account_key": settings.accountkey}
    if settings.sastoken is not None:
        return settings.sastoken
    try:
        import azure.identity as identity
    except ImportError:
        raise ValueError(
            f"{SECTION}.credentials.type: {settings.credential_type} needs the azure-identity package "
            "(pip install 'cargohold-storage-azure[identity]')") from None
    if settings.credential_type == "client_secret":
        return identity.ClientSecretCredential(settings.tenantid, settings.clientid, settings.secret)
    return identity.DefaultAzureCredential()


def build_container_client(settings: AzureSettings, **extra: Any) -> tuple[ContainerClient, Signer | None]:
    """The container's client, and a :data:`Signer` when the credentials can
    sign SAS URLs (a shared account key, given directly or in the connection
    string); ``None`` otherwise.  ``extra`` goes to the SDK client (e.g. a
    ``raw_request_hook`` in tests).  Makes no request."""
    options = {**client_options(settings), **extra}
    if settings.connectionstring is not None:
        try:
            service = BlobServiceClient.from_connection_string(settings.connectionstring, **options)
        except ValueError as exc:
            raise ValueError(f"{SECTION}.connectionstring: {exc}") from None
    else:
        service = BlobServiceClient(settings.account_url, credential=_credential(settings), **options)
    container = service.get_container_client(settings.container)
    key = getattr(service.credential, "account_key", None)
    name = getattr(service.credential, "account_name", None)
    signer = _shared_key_signer(container, name, key) if key and name else None
    return container, signer


def _shared_key_signer(container: ContainerClient, account_name: str, account_key: str) -> Signer:
    def sign(blob_name: str, expiry_seconds: float) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        token = generate_blob_sas(
            account_name=account_name,
            container_name=container.container_name,
            blob_name=blob_name,
            account_key=account_key,
            permission=BlobSasPermissions(read=True),
            start=now - dt.timedelta(minutes=5),  # tolerate clock skew with the service
            expiry=now + dt.timedelta(seconds=expiry_seconds),
        )
        return f"{container.get_blob_client(blob_name).url}?{token}"

    return sign
