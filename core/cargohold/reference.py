"""Grammar of repository names, tags and digests (distribution-spec, "Pulling"
and the image-spec descriptor rules), and streaming digest helpers."""

from __future__ import annotations

import hashlib
import re

from cargohold.errors import DigestInvalid, NameInvalid, TagInvalid

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
NAME_MAX = 255

# Algorithms the registry verifies, with the exact length of their hex form.
ALGORITHMS = {"sha256": 64, "sha512": 128}
DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise NameInvalid(detail={"name": name[:300]})
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid("invalid tag", detail={"tag": tag[:200]})
    return tag


def is_digest(reference: str) -> bool:
    """True when ``reference`` has digest form (``alg:encoded``), valid or not."""
    return ":" in reference


def check_digest(digest: str) -> str:
    """Return ``digest`` if well formed with a supported algorithm, else raise
    DIGEST_INVALID."""
    m = DIGEST_RE.fullmatch(digest or "")
    if not m:
        raise DigestInvalid("invalid digest", detail={"digest": (digest or "")[:200]})
    alg, encoded = m.groups()
    length = ALGORITHMS.get(alg)
    if length is None:
        raise DigestInvalid(f"unsupported digest algorithm {alg!r}", detail={"digest": digest[:200]})
    if len(encoded) != length or not _HEX_RE.fullmatch(encoded):
        raise DigestInvalid("invalid digest", detail={"digest": digest[:200]})
    return digest


def check_algorithm(alg: str) -> str:
    if alg not in ALGORITHMS:
        raise DigestInvalid(f"unsupported digest algorithm {alg!r}", detail={"algorithm": alg[:50]})
    return alg


def algorithm_of(digest: str) -> str:
    return digest.partition(":")[0]


def new_hasher(alg: str = "sha256"):
    return hashlib.new(alg)


def digest_bytes(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"
