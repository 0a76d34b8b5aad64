"""Manifest pull, push and delete, with ``Accept`` negotiation."""

from __future__ import annotations

from flask import Response, request

from cargohold.api.base import content_length, empty, location, read_body, registry, require_deletes, state, v2
from cargohold import events, policy
from cargohold.errors import DigestInvalid, ManifestTooLarge, ManifestUnknown, TagInvalid
from cargohold.manifests import parse
from cargohold.reference import algorithm_of, check_digest, check_tag, is_digest


def _acceptable(media_type: str) -> bool:
    """Whether the client's ``Accept`` allows ``media_type``.  No header (or a
    wildcard) accepts everything."""
    header = request.headers.get("Accept")
    if not header:
        return True
    for part in header.split(","):
        mt = part.split(";")[0].strip().lower()
        if mt in ("*/*", "application/*") or mt == media_type or mt == "":
            return True
    return False


def _existing_reference(reference: str) -> bool:
    """For reads and deletes: whether ``reference`` is a digest.  One that is
    neither a valid tag nor a supported digest cannot name a stored manifest,
    so it is MANIFEST_UNKNOWN (404) like any other missing one, not a 400:
    the OCI conformance suite asks for ``.INVALID_MANIFEST_NAME`` as its
    nonexistent manifest.  Pushes still refuse such a name (TAG_INVALID)."""
    by_digest = is_digest(reference)
    try:
        if by_digest:
            check_digest(reference)
        else:
            check_tag(reference)
    except (DigestInvalid, TagInvalid):
        key = "digest" if by_digest else "tag"
        raise ManifestUnknown(detail={key: reference[:200]}) from None
    return by_digest


@v2.route("/<path:name>/manifests/<reference>", methods=["GET", "HEAD"])
def get_manifest(name: str, reference: str):
    by_digest = _existing_reference(reference)
    digest, media_type, raw = registry().manifests.get(name, reference, by_digest)
    if not _acceptable(media_type):
        raise ManifestUnknown(
            f"the manifest is {media_type}, which the Accept header does not allow",
            detail={"mediaType": media_type},
        )
    headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"', "Content-Length": str(len(raw))}
    body = b"" if request.method == "HEAD" else raw
    if request.method == "GET":
        events.emit(events.PULL, name, digest, media_type, len(raw), tag=None if by_digest else reference)
    resp = Response(body, status=200, content_type=media_type, headers=headers)
    resp.headers["Content-Length"] = str(len(raw))
    return resp


def _read_manifest_body() -> bytes:
    limit = state().config["validation"]["manifests"]["maxsize"]
    length = content_length()
    if length is not None and length > limit:
        raise ManifestTooLarge(detail={"limit": limit, "size": length})
    raw = read_body(limit)
    if len(raw) > limit:
        raise ManifestTooLarge(detail={"limit": limit})
    return raw


@v2.route("/<path:name>/manifests/<reference>", methods=["PUT"])
def put_manifest(name: str, reference: str):
    reg = registry()
    tags = request.args.getlist("tag")
    if is_digest(reference):
        check_digest(reference)
        algorithm = algorithm_of(reference)
    else:
        tags = [reference] + [t for t in tags if t != reference]
        algorithm = "sha256"
    for tag in tags:
        check_tag(tag)
    raw = _read_manifest_body()
    manifest = parse(raw, request.headers.get("Content-Type"), algorithm)
    if is_digest(reference) and manifest.digest != reference:
        raise DigestInvalid("manifest digest does not match the reference",
                             detail={"reference": reference, "actual": manifest.digest})
    reg.manifests.check_references(name, manifest)
    pm = state().pm
    for ref in tags or [manifest.digest]:
        policy.check(pm, "cargohold_before_manifest_put", repository=name, reference=ref, manifest=manifest)
    if tags and policy.active(pm, "cargohold_before_tag_put"):
        for tag in tags:
            policy.check(pm, "cargohold_before_tag_put", repository=name, tag=tag,
                         old_digest=reg.manifests.tag_target(name, tag), new_digest=manifest.digest)
    reg.manifests.put(name, manifest, tags)
    for tag in tags or [None]:
        events.emit(events.PUSH, name, manifest.digest, manifest.media_type, len(manifest.raw), tag=tag)
    headers = {
        "Location": location(f"/v2/{name}/manifests/{manifest.digest}"),
        "Docker-Content-Digest": manifest.digest,
    }
    subject = manifest.subject
    if subject is not None:
        headers["OCI-Subject"] = subject.digest
    resp = empty(201, headers)
    if is_digest(reference):
        for tag in tags:
            resp.headers.add("OCI-Tag", tag)
    return resp


@v2.route("/<path:name>/manifests/<reference>", methods=["DELETE"])
def delete_manifest(name: str, reference: str):
    require_deletes()
    reg = registry()
    pm = state().pm
    check = policy.active(pm, "cargohold_before_delete")
    if _existing_reference(reference):
        if check:
            if not reg.manifests.has_revision(name, reference):
                raise ManifestUnknown(detail={"digest": reference})
            policy.check(pm, "cargohold_before_delete", repository=name, kind="manifest", reference=reference,
                         digest=reference, tags=reg.manifests.tags_of(name, reference))
        reg.manifests.delete(name, reference)
        events.emit(events.DELETE, name, digest=reference)
    else:
        if check:
            policy.check(pm, "cargohold_before_delete", repository=name, kind="tag", reference=reference,
                         digest=reg.manifests.resolve_tag(name, reference), tags=[reference])
        reg.manifests.delete_tag(name, reference)
        # As the reference's TagDeleted: the tag, not the manifest it named.
        events.emit(events.DELETE, name, tag=reference)
    return empty(202)
