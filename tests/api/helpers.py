"""Pushing content through a Flask test client, reading error bodies, and recording events."""

from __future__ import annotations

import hashlib
import json

from cargohold import hookimpl
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def error_code(resp) -> str:
    """The code of the single error in a spec error body."""
    body = resp.get_json()
    assert isinstance(body, dict) and len(body["errors"]) == 1, resp.data
    return body["errors"][0]["code"]


def push_blob(client, name: str, data: bytes) -> str:
    """Monolithic upload (``POST ?digest=``); returns the digest."""
    digest = digest_of(data)
    resp = client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data,
                       content_type="application/octet-stream")
    assert resp.status_code == 201, resp.data
    return digest


def image_manifest(client, name: str, layer: bytes = b"layer", media_type: str = OCI_MANIFEST,
                   **extra) -> bytes:
    """Push a config and one layer into ``name``; return the bytes of an
    image manifest referring to them (not pushed)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "layer": layer.hex()}).encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": OCI_CONFIG, "digest": push_blob(client, name, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(client, name, layer), "size": len(layer)}],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


def put_manifest(client, name: str, reference: str, raw: bytes, media_type: str = OCI_MANIFEST, **kw):
    return client.put(f"/v2/{name}/manifests/{reference}", data=raw, content_type=media_type, **kw)


def push_image(client, name: str, tag: str | None = "latest", layer: bytes = b"layer",
               media_type: str = OCI_MANIFEST, **extra) -> tuple[str, bytes]:
    """Push an image (blobs and manifest, tagged ``tag`` or by digest);
    returns ``(digest, manifest bytes)``."""
    raw = image_manifest(client, name, layer, media_type, **extra)
    digest = digest_of(raw)
    resp = put_manifest(client, name, tag or digest, raw, media_type)
    assert resp.status_code == 201, resp.data
    assert resp.headers["Docker-Content-Digest"] == digest
    return digest, raw


def upload_sessions(state, name: str) -> list[str]:
    """The upload session directories of repository ``name`` in the app's storage."""
    try:
        return state.driver.list(paths.uploads(name))
    except PathNotFound:
        return []


def blob_stored(state, digest: str) -> bool:
    """Whether the blob store holds bytes under ``digest``."""
    try:
        state.driver.stat(paths.blob_data(digest))
        return True
    except PathNotFound:
        return False


class EventLog:
    """A plugin recording every registry event it is handed."""

    def __init__(self):
        self.events = []

    @hookimpl
    def cargohold_registry_event(self, event):
        self.events.append(event)


class ReportLog:
    """A plugin recording every error handed to the error reporters."""

    def __init__(self):
        self.errors = []

    @hookimpl
    def cargohold_report_exception(self, error):
        self.errors.append(error)
