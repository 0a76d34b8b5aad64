"""Small shared helpers for the black-box conformance suite.

Everything here speaks plain HTTP to a running registry; nothing imports the
server.  Spec references are to the OCI Distribution Spec v1.1 ("OCI") and the
Docker Registry HTTP API V2 document ("Docker", distribution's
``docs/content/spec/api.md``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests

# Media types ---------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ACCEPT_ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

EMPTY_JSON = b"{}"

# Every code the OCI spec lists ("Error Codes"), plus the legacy Docker codes
# it says clients may meet (TAG_INVALID, MANIFEST_UNVERIFIED, ...).
OCI_ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}
DOCKER_ERROR_CODES = {
    "UNKNOWN", "MANIFEST_UNVERIFIED", "TAG_INVALID", "PAGINATION_NUMBER_INVALID",
    "RANGE_INVALID", "UNAVAILABLE",
}
KNOWN_ERROR_CODES = OCI_ERROR_CODES | DOCKER_ERROR_CODES

# Upload progress: OCI says "Range: 0-<end-of-range>"; Docker's overview also
# shows the "bytes=" form.
_RANGE_RE = re.compile(r"^(?:bytes=)?0-(\d+)$")


def digest_of(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def unique_repo(kind: str = "app") -> str:
    """A fresh multi-component repository name, e.g. ``conf/3f2a.../app``."""
    return f"conf/{uuid.uuid4().hex[:16]}/{kind}"


def unique_tag(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def random_bytes(n: int = 64) -> bytes:
    out = b""
    while len(out) < n:
        out += uuid.uuid4().bytes
    return out[:n]


def canonical(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    d = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
    d.update(extra)
    return d


def with_query(url: str, params: list[tuple[str, str]] | dict) -> str:
    """Append query parameters to an opaque upload ``Location`` (which may
    already carry its own query)."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    req = requests.Request("GET", url, params=items).prepare()
    return req.url


def range_end(value: str | None) -> int:
    """The ``<end-of-range>`` of an upload ``Range`` header, asserting its form."""
    assert value is not None, "missing Range header"
    m = _RANGE_RE.match(value.strip())
    assert m, f"Range header {value!r} is not of the form 0-<end-of-range>"
    return int(m.group(1))


def header_list(resp: requests.Response, name: str) -> list[str]:
    """All comma-separated values of a (possibly repeated) header."""
    raw = resp.headers.get(name)
    if raw is None:
        return []
    return [v.strip() for v in raw.split(",") if v.strip()]


def next_link(resp: requests.Response) -> str | None:
    """The target of an RFC 5988 ``Link: <url>; rel="next"`` header, or None."""
    raw = resp.headers.get("Link")
    if not raw:
        return None
    for part in raw.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;\s*(.*)$', part)
        if m and re.search(r'rel="?next"?', m.group(2)):
            return m.group(1)
    raise AssertionError(f"Link header without rel=\"next\": {raw!r}")


def assert_error(resp: requests.Response, status: int | tuple, codes: str | tuple | set | None = None) -> dict:
    """Assert an error response: status, JSON content type and the spec's
    ``{"errors": [{"code", "message", "detail"}]}`` body, with at least one
    error whose code is in ``codes``.  Returns the parsed body."""
    statuses = (status,) if isinstance(status, int) else tuple(status)
    assert resp.status_code in statuses, (
        f"{resp.request.method} {resp.request.url}: expected {statuses}, got {resp.status_code}: {resp.text[:500]!r}")
    if resp.request.method == "HEAD":
        return {}
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/json", f"error Content-Type is {ctype!r}: {resp.text[:200]!r}"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
    for err in body["errors"]:
        assert isinstance(err, dict), body
        assert isinstance(err.get("code"), str) and re.fullmatch(r"[A-Z_]+", err["code"]), body
        assert isinstance(err.get("message"), str), body
    if codes is not None:
        wanted = {codes} if isinstance(codes, str) else set(codes)
        got = {e["code"] for e in body["errors"]}
        assert got & wanted, f"expected an error code in {sorted(wanted)}, got {sorted(got)}: {body}"
    return body


def raw_request(base: str, method: str, path: str, headers: dict | None = None,
                body: bytes | None = None) -> tuple[int, dict, bytes]:
    """Send one request with ``http.client`` (no URL normalisation, unlike
    requests) and return ``(status, headers, body)``."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def head_wire_body(base: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """Send a HEAD over a raw socket with ``Connection: close`` and return the
    status and whatever bytes followed the header block (must be empty)."""
    u = urlsplit(base)
    lines = [f"HEAD {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest


@dataclass
class Pushed:
    """A manifest pushed by :meth:`Client.push_image` and friends."""

    repo: str
    body: bytes
    media_type: str
    digest: str
    config: bytes = b""
    layers: list[bytes] = field(default_factory=list)
    response: requests.Response | None = None

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self, **extra) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


class Client:
    """A ``requests`` session bound to one registry base URL."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.session = requests.Session()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base + "/", path_or_url)

    def request(self, method: str, path_or_url: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, self.url(path_or_url), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- blobs ---------------------------------------------------------------

    def start_upload(self, repo: str, params: dict | None = None) -> requests.Response:
        return self.post(f"/v2/{repo}/blobs/uploads/", params=params, data=b"",
                         headers={"Content-Length": "0"})

    def push_blob(self, repo: str, data: bytes, alg: str = "sha256") -> str:
        """Push with POST then PUT (the one blob push every registry must
        support) and return the digest."""
        dig = digest_of(data, alg)
        start = self.start_upload(repo)
        assert start.status_code == 202, (start.status_code, start.text)
        put = self.put(with_query(self.url(start.headers["Location"]), {"digest": dig}), data=data,
                       headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, (put.status_code, put.text)
        return dig

    # -- manifests -----------------------------------------------------------

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str,
                     params=None) -> requests.Response:
        return self.put(f"/v2/{repo}/manifests/{reference}", data=body, params=params,
                        headers={"Content-Type": media_type})

    def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_ALL_MANIFESTS,
                     method: str = "GET") -> requests.Response:
        return self.request(method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})

    def push_manifest(self, repo: str, reference: str | None, manifest: dict,
                      media_type: str | None = None, **blobs) -> Pushed:
        """Serialise ``manifest``, PUT it by ``reference`` (its digest when
        None) and assert 201."""
        media_type = media_type or manifest.get("mediaType") or OCI_MANIFEST
        body = canonical(manifest)
        dig = digest_of(body)
        resp = self.put_manifest(repo, reference or dig, body, media_type)
        assert resp.status_code == 201, (resp.status_code, resp.text)
        return Pushed(repo=repo, body=body, media_type=media_type, digest=dig, response=resp, **blobs)

    def push_image(self, repo: str, tag: str | None = None, layers: int = 1, *,
                   docker: bool = False, annotations: dict | None = None, subject: dict | None = None,
                   artifact_type: str | None = None, config_media_type: str | None = None,
                   config: bytes | None = None) -> Pushed:
        """Push a config and ``layers`` random layers, then an image manifest
        referencing them (OCI, or Docker schema 2 when ``docker``)."""
        if config is None:
            config = canonical({"architecture": "amd64", "os": "linux",
                                "rootfs": {"type": "layers", "diff_ids": []}, "nonce": uuid.uuid4().hex})
        layer_data = [random_bytes(100 + 17 * i) for i in range(layers)]
        self.push_blob(repo, config)
        for data in layer_data:
            self.push_blob(repo, data)
        mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": descriptor(config_media_type or (DOCKER_CONFIG if docker else OCI_CONFIG), config),
            "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, d) for d in layer_data],
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        if subject:
            manifest["subject"] = subject
        if annotations:
            manifest["annotations"] = annotations
        return self.push_manifest(repo, tag, manifest, mt, config=config, layers=layer_data)

    def push_artifact(self, repo: str, subject: dict, artifact_type: str | None,
                      annotations: dict | None = None, tag: str | None = None,
                      config_media_type: str = OCI_EMPTY) -> Pushed:
        """An OCI 1.1 artifact: empty config, one small layer, ``subject``."""
        self.push_blob(repo, EMPTY_JSON)
        layer = random_bytes(40)
        self.push_blob(repo, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config_media_type, EMPTY_JSON),
            "layers": [descriptor("application/vnd.example.payload", layer)],
            "subject": subject,
        }
        if artifact_type:
            manifest["artifactType"] = artifact_type
        if annotations:
            manifest["annotations"] = annotations
        return self.push_manifest(repo, tag, manifest, OCI_MANIFEST, config=EMPTY_JSON, layers=[layer])

    def tags(self, repo: str) -> list[str]:
        resp = self.get(f"/v2/{repo}/tags/list")
        assert resp.status_code == 200, (resp.status_code, resp.text)
        return resp.json().get("tags") or []
