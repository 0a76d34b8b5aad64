"""Blob pulls, deletes and uploads (monolithic, chunked, resumable, mount)."""

from __future__ import annotations

from flask import Response, redirect, request

from cargohold.api.base import (
    body_chunks,
    content_length,
    empty,
    location,
    parse_content_range,
    registry,
    require_deletes,
    state,
    v2,
)
from cargohold import events, policy
from cargohold.errors import BlobUnknown, DigestInvalid, RangeInvalid
from cargohold.reference import check_algorithm, check_digest


def _blob_location(name: str, digest: str) -> str:
    return location(f"/v2/{name}/blobs/{digest}")


def _upload_headers(name: str, upload_id: str, size: int) -> dict:
    return {
        "Location": location(f"/v2/{name}/blobs/uploads/{upload_id}"),
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


# -- pull and delete -----------------------------------------------------------


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as ``(start, end)`` inclusive; ``None`` when
    the header should be ignored (not a bytes range).  Unsatisfiable → 416."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    try:
        if not sep:
            return None
        if first == "":
            n = int(last)
            if n <= 0:
                raise RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        raise RangeInvalid("requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


@v2.route("/<path:name>/blobs/<digest>", methods=["GET", "HEAD"])
def get_blob(name: str, digest: str):
    check_digest(digest)
    reg = registry()
    size = reg.blobs.stat_in(name, digest)
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "GET" and not state().config["storage"]["redirect"]["disable"]:
        url = reg.blobs.redirect_url(digest)
        if url:
            resp = redirect(url, code=307)
            resp.headers.update(headers)
            return resp
    status, start, length = 200, 0, size
    rng = request.headers.get("Range")
    if rng and size > 0:
        parsed = _parse_range(rng, size)
        if parsed is not None:
            start, end = parsed
            status, length = 206, end - start + 1
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    elif rng and size == 0 and _parse_range_unit(rng):
        raise RangeInvalid("requested range not satisfiable", headers={"Content-Range": "bytes */0"})
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        resp = Response(b"", status=status, content_type="application/octet-stream", headers=headers)
        resp.headers["Content-Length"] = str(length)
        return resp
    body = reg.blobs.open_file(digest, start, length) or reg.blobs.open(digest, start, length)
    events.emit(events.PULL, name, digest, events.BLOB_MEDIA_TYPE, size)
    resp = Response(body, status=status, content_type="application/octet-stream", headers=headers,
                    direct_passthrough=True)
    return resp


def _commit_check(name: str, session: str | None = None):
    """The ``before_commit`` check of an upload into ``name``: the
    ``cargohold_before_blob_commit`` policy, or ``None`` when no plugin has
    one.  A refusal also ends the upload ``session``, if given (a whole blob
    sent to a session, as :meth:`Uploads.finish` ends its own)."""
    pm = state().pm
    if not policy.active(pm, "cargohold_before_blob_commit"):
        return None

    def check(digest: str, size: int) -> None:
        try:
            policy.check(pm, "cargohold_before_blob_commit", repository=name, digest=digest, size=size)
        except BaseException:
            if session is not None:
                registry().uploads.discard(name, session)
            raise

    return check


def _upload_check(name: str, size: int | None, digest: str | None = None) -> None:
    """The ``cargohold_before_blob_upload`` policy, before a request's blob bytes are read."""
    policy.check(state().pm, "cargohold_before_blob_upload", repository=name, size=size, digest=digest)


def _chunk_check(name: str, upload_id: str, length: int | None) -> None:
    """:func:`_upload_check` for bytes appended to a session: the size is the
    session's bytes plus ``length`` (``None`` if not given).  An unknown
    session is BLOB_UPLOAD_UNKNOWN first, as without a policy."""
    if policy.active(state().pm, "cargohold_before_blob_upload"):
        received = registry().uploads.size(name, upload_id)
        _upload_check(name, None if length is None else received + length)


def _parse_range_unit(header: str) -> bool:
    return header.partition("=")[0].strip().lower() == "bytes"


@v2.route("/<path:name>/blobs/<digest>", methods=["DELETE"])
def delete_blob(name: str, digest: str):
    require_deletes()
    check_digest(digest)
    reg = registry()
    pm = state().pm
    if policy.active(pm, "cargohold_before_delete"):
        if not reg.blobs.is_linked(name, digest):
            raise BlobUnknown(detail={"digest": digest})
        policy.check(pm, "cargohold_before_delete", repository=name, kind="blob", reference=digest, digest=digest,
                     tags=[])
    reg.blobs.unlink(name, digest)
    events.emit(events.DELETE, name, digest=digest)
    return empty(202, {"Docker-Content-Digest": digest})


# -- uploads -------------------------------------------------------------------


@v2.route("/<path:name>/blobs/uploads/", methods=["POST"], endpoint="start_upload")
@v2.route("/<path:name>/blobs/uploads", methods=["POST"], endpoint="start_upload")
def start_upload(name: str):
    reg = registry()
    args = request.args
    mount, source = args.get("mount"), args.get("from")
    if mount:
        check_digest(mount)
        if source and reg.blobs.rely_on_link(source, mount) and reg.blobs.size(mount) is not None:
            policy.check(state().pm, "cargohold_before_blob_mount", repository=name, from_repository=source,
                         digest=mount, size=reg.blobs.size(mount))
            if not reg.blobs.is_linked(name, mount):
                reg.blobs.link(name, mount)
            events.emit(events.MOUNT, name, mount, events.BLOB_MEDIA_TYPE, reg.blobs.size(mount), from_repository=source)
            return empty(201, {"Location": _blob_location(name, mount), "Docker-Content-Digest": mount})
        # Not mountable: fall back to a regular upload session (spec: 202).
    digest = args.get("digest")
    algorithm = check_algorithm(args.get("digest-algorithm", "sha256"))
    if digest is not None:
        check_digest(digest)
        length = content_length()
        _upload_check(name, length, digest)
        size = reg.uploads.put_whole(name, digest, body_chunks(), length=length, before_commit=_commit_check(name))
        events.emit(events.PUSH, name, digest, events.BLOB_MEDIA_TYPE, size)
        return empty(201, {"Location": _blob_location(name, digest), "Docker-Content-Digest": digest})
    _upload_check(name, None)
    upload_id = reg.uploads.start(name, algorithm)
    return empty(202, _upload_headers(name, upload_id, 0))


@v2.route("/<path:name>/blobs/uploads/<upload_id>", methods=["GET"])
def upload_status(name: str, upload_id: str):
    size = registry().uploads.size(name, upload_id)
    return empty(204, _upload_headers(name, upload_id, size))


@v2.route("/<path:name>/blobs/uploads/<upload_id>", methods=["PATCH"])
def upload_chunk(name: str, upload_id: str):
    reg = registry()
    rng = parse_content_range(request.headers.get("Content-Range"))
    length = content_length()
    if rng is not None and length is not None and rng[1] - rng[0] + 1 != length:
        raise RangeInvalid("Content-Range and Content-Length disagree",
                           detail={"Content-Range": request.headers.get("Content-Range"), "Content-Length": length})
    _chunk_check(name, upload_id, length)
    try:
        size = reg.uploads.append(name, upload_id, body_chunks(), start=rng[0] if rng else None, length=length)
    except RangeInvalid as e:
        current = reg.uploads.size(name, upload_id)
        e.headers.update(_upload_headers(name, upload_id, current))
        raise
    return empty(202, _upload_headers(name, upload_id, size))


@v2.route("/<path:name>/blobs/uploads/<upload_id>", methods=["PUT"])
def finish_upload(name: str, upload_id: str):
    reg = registry()
    digest = request.args.get("digest")
    if not digest:
        raise DigestInvalid("the digest query parameter is required to complete an upload")
    check_digest(digest)
    length = content_length()
    rng = parse_content_range(request.headers.get("Content-Range"))
    chunked = length is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    if (length or chunked) and (rng is None or rng[0] == 0) and reg.uploads.size(name, upload_id) == 0:
        # The whole blob in this one request: straight into the blob store.
        _upload_check(name, length, digest)
        try:
            size = reg.uploads.put_whole(name, digest, body_chunks(), length=length,
                                         before_commit=_commit_check(name, upload_id))
        except DigestInvalid:
            reg.uploads.discard(name, upload_id)  # as finish() does: the session is spent
            raise
        reg.uploads.discard(name, upload_id)
        events.emit(events.PUSH, name, digest, events.BLOB_MEDIA_TYPE, size)
        return empty(201, {"Location": _blob_location(name, digest), "Docker-Content-Digest": digest})
    if length or rng or chunked:
        _chunk_check(name, upload_id, length)
        try:
            reg.uploads.append(name, upload_id, body_chunks(), start=rng[0] if rng else None, length=length)
        except RangeInvalid as e:
            e.headers.update(_upload_headers(name, upload_id, reg.uploads.size(name, upload_id)))
            raise
    size = reg.uploads.finish(name, upload_id, digest, before_commit=_commit_check(name))
    events.emit(events.PUSH, name, digest, events.BLOB_MEDIA_TYPE, size)
    return empty(201, {"Location": _blob_location(name, digest), "Docker-Content-Digest": digest})


@v2.route("/<path:name>/blobs/uploads/<upload_id>", methods=["DELETE"])
def cancel_upload(name: str, upload_id: str):
    registry().uploads.cancel(name, upload_id)
    return empty(204)
