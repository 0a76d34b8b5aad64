"""Parsing and validating pushed manifests (no storage here).

Supported: OCI image manifest and index, Docker schema2 manifest and manifest
list.  Docker schema1 is refused, as current registries do.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Iterable, Iterator, Mapping

from cargohold.errors import ManifestInvalid
from cargohold.reference import check_digest, digest_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES

# Content types that say nothing about the manifest; the body decides.
_GENERIC_CONTENT_TYPES = ("", "application/json", "application/octet-stream", "text/plain")

#: Most JSON values (array elements, object members, objects and arrays) a
#: manifest may hold.  Decoded JSON costs 50-100 bytes of Python objects per
#: value whatever its size in the text, so 4 MiB of ``{},{},...`` would take
#: some 100 MiB to parse; real manifests hold a few hundred values, an index
#: of 5,000 platforms about 50,000.
MAX_JSON_VALUES = 100_000
# A JSON string (whose punctuation is text, not structure), or a separator.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[,{\[]')


def _too_many_values(raw: bytes) -> bool:
    """Whether ``raw`` holds more than :data:`MAX_JSON_VALUES` values,
    counted as its separators and containers outside strings.  Counting the
    raw bytes costs about a millisecond for 4 MiB and settles nearly every
    manifest; only one over the limit is scanned token by token (in constant
    memory, stopping at the limit) so that punctuation inside strings does
    not count."""
    if raw.count(b",") + raw.count(b"{") + raw.count(b"[") <= MAX_JSON_VALUES:
        return False
    n = 0
    for token in _JSON_TOKEN.finditer(raw):
        if raw[token.start()] != 0x22:  # a separator, not a string
            n += 1
            if n > MAX_JSON_VALUES:
                return True
    return False


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    annotations: dict | None = None


@dataclasses.dataclass
class Manifest:
    """A parsed manifest.  ``raw`` is exactly the pushed bytes (its digest is
    the manifest's identity); ``data`` the decoded JSON."""

    media_type: str
    digest: str
    raw: bytes
    data: dict

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def subject(self) -> Descriptor | None:
        sub = self.data.get("subject")
        return _descriptor(sub, "subject") if sub is not None else None

    @property
    def artifact_type(self) -> str | None:
        """The referrers API's artifactType: the manifest's own field, else
        (image manifests) the config's media type."""
        at = self.data.get("artifactType")
        if at:
            return at
        if not self.is_index:
            cfg = self.data.get("config") or {}
            return cfg.get("mediaType")
        return None

    @property
    def annotations(self) -> dict | None:
        ann = self.data.get("annotations")
        return ann if isinstance(ann, dict) and ann else None

    def blob_references(self) -> list[Descriptor]:
        """Config and layers of an image manifest (blobs that must exist)."""
        if self.is_index:
            return []
        refs = [_descriptor(self.data["config"], "config")]
        refs += [_descriptor(d, f"layers[{i}]") for i, d in enumerate(self.data.get("layers") or [])]
        return refs

    def manifest_references(self) -> list[Descriptor]:
        """Child manifests of an index or manifest list."""
        if not self.is_index:
            return []
        return [_descriptor(d, f"manifests[{i}]") for i, d in enumerate(self.data.get("manifests") or [])]


def media_type_of(data: dict) -> str:
    """The media type of a stored manifest: its ``mediaType`` field, else
    inferred from its shape (OCI allows omitting the field)."""
    mt = data.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    return OCI_INDEX if "manifests" in data else OCI_MANIFEST


def parse(raw: bytes, content_type: str | None, algorithm: str = "sha256") -> Manifest:
    """Decode and validate a pushed manifest.  Raises MANIFEST_INVALID with a
    detail saying what is wrong."""
    if _too_many_values(raw):
        raise ManifestInvalid(f"manifest has more than {MAX_JSON_VALUES} JSON values",
                              detail={"limit": MAX_JSON_VALUES})
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ManifestInvalid("manifest is not valid JSON", detail=str(e)[:200])
    if not isinstance(data, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    content_type = (content_type or "").split(";")[0].strip().lower()
    body_type = data.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType must be a string")
    if content_type in DOCKER_SCHEMA1 or body_type in DOCKER_SCHEMA1 or data.get("schemaVersion") == 1:
        raise ManifestInvalid("Docker schema1 manifests are not supported; push schema2 or OCI")
    if content_type not in _GENERIC_CONTENT_TYPES:
        if content_type not in MANIFEST_TYPES:
            raise ManifestInvalid(f"unsupported manifest media type {content_type!r}")
        if body_type and body_type != content_type:
            raise ManifestInvalid(
                "Content-Type does not match the manifest's mediaType",
                detail={"contentType": content_type, "mediaType": body_type},
            )
        media_type = content_type
    else:
        media_type = media_type_of(data)
        if media_type not in MANIFEST_TYPES:
            raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    if data.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    manifest = Manifest(media_type, digest_bytes(raw, algorithm), raw, data)
    _validate_shape(manifest)
    return manifest


def _validate_shape(m: Manifest) -> None:
    d = m.data
    if m.is_index:
        if not isinstance(d.get("manifests"), list):
            raise ManifestInvalid("an index must have a 'manifests' list")
        m.manifest_references()
    else:
        if not isinstance(d.get("config"), dict):
            raise ManifestInvalid("an image manifest must have a 'config' descriptor")
        if not isinstance(d.get("layers", []), list):
            raise ManifestInvalid("'layers' must be a list")
        m.blob_references()
    if "subject" in d:
        m.subject  # validates
    for key in ("artifactType",):
        if key in d and not isinstance(d[key], str):
            raise ManifestInvalid(f"{key} must be a string")
    if "annotations" in d and not isinstance(d["annotations"], dict):
        raise ManifestInvalid("annotations must be an object")


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestInvalid(f"{where}: descriptor must be an object")
    mt, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mt:
        raise ManifestInvalid(f"{where}: mediaType is required")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: digest is required")
    try:
        check_digest(digest)
    except Exception:
        raise ManifestInvalid(f"{where}: invalid digest", detail={"digest": digest[:200]})
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: size must be a non-negative integer")
    urls = obj.get("urls") or ()
    if not isinstance(urls, (list, tuple)):
        raise ManifestInvalid(f"{where}: urls must be a list")
    ann = obj.get("annotations")
    return Descriptor(mt, digest, size, tuple(urls), obj.get("artifactType"), ann if isinstance(ann, dict) else None)


def stored_references(raw: bytes) -> tuple[list[str], list[str], str | None]:
    """``(blobs, child manifests, subject)`` named by a stored manifest of any
    kind (OCI, Docker schema 2, schema 1, artifact); empty when unreadable."""
    try:
        data = json.loads(raw)
    except ValueError:
        return [], [], None
    if not isinstance(data, dict):
        return [], [], None

    def digests(items, key="digest") -> list[str]:
        if not isinstance(items, list):
            return []
        return [d[key] for d in items if isinstance(d, dict) and isinstance(d.get(key), str)]

    blobs = digests(data.get("layers")) + digests(data.get("blobs")) + digests(data.get("fsLayers"), "blobSum")
    config = data.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        blobs.append(config["digest"])
    subject = data.get("subject")
    subject_digest = subject.get("digest") if isinstance(subject, dict) else None
    return blobs, digests(data.get("manifests")), subject_digest if isinstance(subject_digest, str) else None


def manifest_closure(roots: Iterable[str], read: Callable[[str], bytes | None],
                     by_subject: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, tuple | None]]:
    """Every manifest ``roots`` reach, once each: the roots, the children an
    index names (recursively) and, through ``by_subject`` (subject digest ->
    referrer digests), the referrers of each.  Yields ``(digest,
    references)``: :func:`stored_references` of the bytes ``read(digest)``
    returns, or ``None`` when it returns ``None`` (not stored).  What the
    garbage collector keeps, and what retention counts as tagged."""
    seen: set[str] = set()
    queue = list(roots)
    while queue:
        digest = queue.pop()
        if digest in seen:
            continue
        seen.add(digest)
        raw = read(digest)
        if raw is None:
            yield digest, None
            continue
        references = stored_references(raw)
        yield digest, references
        queue += references[1]
        queue += by_subject.get(digest, ())
