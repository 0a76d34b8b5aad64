"""A registry client that pushes and pulls small generated images over the
distribution API, with nothing but the standard library (no skopeo).

It talks either to a live registry (``RegistryClient("http://127.0.0.1:5000")``,
over :mod:`http.client`) or to an app in the same process
(``RegistryClient.for_app(app)``, through Flask's test client), the same
requests either way.  Every refusal raises :class:`RegistryResponseError`
carrying the status and the spec's error document, so a plugin's test can
assert on the code it expects::

    with pytest.raises(RegistryResponseError) as refused:
        client.push_image("team/app", "latest")
    assert refused.value.code == "DENIED"
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cargohold.testing.images import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, sha256, tar_gz


@dataclass
class Response:
    """One answer: ``status``, ``headers`` (names lower-cased), ``body``."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class RegistryResponseError(AssertionError):
    """The registry answered a status the step did not expect.  ``errors``
    is the spec's error list (empty if the body was not one), ``code`` the
    first error's code."""

    def __init__(self, step: str, response: Response):
        self.step, self.response, self.status = step, response, response.status
        try:
            self.errors = list(response.json().get("errors") or [])
        except (ValueError, AttributeError):
            self.errors = []
        self.code = self.errors[0].get("code") if self.errors else None
        super().__init__(f"{step}: {response.status} {response.body[:500]!r}")


@dataclass
class Image:
    """A generated image: its manifest (bytes, as pushed), config and layers."""

    manifest: bytes
    config: bytes
    layers: list[bytes]
    media_type: str = OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {sha256(b): b for b in (self.config, *self.layers)}


@dataclass
class Pulled:
    """What :meth:`RegistryClient.pull_image` fetched, every digest verified."""

    manifest: bytes
    digest: str
    blobs: dict[str, bytes] = field(default_factory=dict)


def make_image(layers: int = 1, layer_size: int = 1024, seed: str = "") -> Image:
    """A real OCI image in memory: ``layers`` gzip'd tar layers, each with a
    file of ``layer_size`` incompressible bytes, and its config.  ``seed``
    varies the content (same arguments, same digests)."""
    blobs, diff_ids = [], []
    for i in range(layers):
        data = hashlib.shake_256(f"{seed}/{i}".encode()).digest(layer_size)
        blob, diff_id = tar_gz({f"layer{i}/data.bin": data})
        blobs.append(blob)
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": seed}},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in blobs],
    }, indent=2, sort_keys=True).encode()
    return Image(manifest, config, blobs)


class RegistryClient:
    """Pushes and pulls through the distribution API.  ``headers`` go with
    every request (e.g. ``{"Authorization": "Basic ..."}``)."""

    def __init__(self, url: str, headers: dict | None = None, ssl_context: ssl.SSLContext | None = None):
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self._ssl = ssl_context
        self._app_client = None

    @classmethod
    def for_app(cls, app, headers: dict | None = None) -> "RegistryClient":
        """A client of ``app`` in this process (Flask's test client; each
        response read whole and closed, as a server does)."""
        client = cls("http://localhost", headers)
        client._app_client = app.test_client()
        return client

    # -- transport ----------------------------------------------------------

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Response:
        """One request; ``path`` is absolute (``/v2/...``) or a full URL on
        this registry (a ``Location`` header)."""
        parts = urlsplit(path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {**self.headers, **(headers or {})}
        if self._app_client is not None:
            resp = self._app_client.open(target, method=method, data=body, headers=headers, buffered=True)
            try:
                return Response(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.get_data())
            finally:
                resp.close()
        base = urlsplit(self.url)
        conn = (http.client.HTTPSConnection(base.netloc, timeout=30, context=self._ssl) if base.scheme == "https"
                else http.client.HTTPConnection(base.netloc, timeout=30))
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def _expect(self, step: str, resp: Response, *statuses: int) -> Response:
        if resp.status not in statuses:
            raise RegistryResponseError(step, resp)
        return resp

    # -- push ------------------------------------------------------------------

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` (POST, then one PUT with the digest); return its digest."""
        digest = sha256(data)
        start = self._expect(f"start upload to {repository}",
                             self.request("POST", f"/v2/{repository}/blobs/uploads/"), 202)
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        self._expect(f"upload {digest}", self.request(
            "PUT", f"{location}{sep}digest={digest}", data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}), 201)
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: bytes,
                     media_type: str = OCI_MANIFEST) -> str:
        """PUT ``manifest`` as ``repository:reference``; return its digest."""
        resp = self._expect(f"put manifest {repository}:{reference}", self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", manifest, {"Content-Type": media_type}), 201)
        return resp.headers.get("docker-content-digest", sha256(manifest))

    def push_image(self, repository: str, tag: str = "latest", image: Image | None = None, **generate) -> Image:
        """Push ``image`` (default: :func:`make_image` with ``generate``'s
        arguments): its blobs, then its manifest as ``tag``.  Returns it."""
        image = image or make_image(**generate)
        for data in (image.config, *image.layers):
            self.push_blob(repository, data)
        self.put_manifest(repository, tag, image.manifest, image.media_type)
        return image

    # -- pull -------------------------------------------------------------------

    def get_blob(self, repository: str, digest: str) -> bytes:
        data = self._expect(f"get blob {digest}", self.request("GET", f"/v2/{repository}/blobs/{digest}"), 200).body
        assert sha256(data) == digest, f"blob {digest} came back as {sha256(data)}"
        return data

    def pull_image(self, repository: str, reference: str = "latest") -> Pulled:
        """The manifest ``repository:reference`` names and every blob it
        lists, each checked against its digest."""
        resp = self._expect(f"get manifest {repository}:{reference}", self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}), 200)
        doc = json.loads(resp.body)
        pulled = Pulled(resp.body, resp.headers.get("docker-content-digest", sha256(resp.body)))
        for desc in (doc["config"], *doc.get("layers", ())):
            pulled.blobs[desc["digest"]] = self.get_blob(repository, desc["digest"])
        return pulled
