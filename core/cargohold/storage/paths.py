"""The storage layout.  This is the only module that knows where things live.

::

    /v2
    ├── blobs/<alg>/<hex[:2]>/<hex>/data        content-addressed bytes (layers,
    │                                           configs and manifests alike)
    └── repositories/<name>/                    <name> may span components
        ├── _layers/<alg>/<hex>/link            blob is linked into the repo
        ├── _manifests/
        │   ├── revisions/<alg>/<hex>/link      manifest is in the repo
        │   └── tags/<tag>/current/link         tag -> manifest digest
        ├── _referrers/<alg>/<hex>/<alg>-<hex>  subject -> referrer manifests
        ├── _proxy/                         pull-through cache records (below)
        └── _uploads/<id>/
            ├── data                            bytes received so far
            └── startedat                       ISO timestamp, for purging

Beside it, outside the reference registry's ``/v2`` tree (which it never
reads), cargohold keeps what its online garbage collector needs
(:mod:`cargohold.gc`)::

    /cargohold/gc
    ├── used/<alg>/<hex[:2]>/<hex>              a registry relied on the blob or
    │                                           manifest at this file's modtime
    ├── condemned/<alg>/<hex>                   the collector is sweeping it; holds
    │                                           the links it removed (to restore)
    ├── lease/<epoch>                           the one collector running
    └── clock/<id>                              probes of the store's clock

and, for any other maintenance task that must run once at a time (say
retention), a lease of its own (:mod:`cargohold.gc.lease`) and the time of
its last completed run (the file's modtime; scheduled runs in several
workers use it to run once per interval)::

    /cargohold/<task>/lease/<epoch>
    /cargohold/<task>/lastrun

and the listing index (:mod:`cargohold.registry.catalog`): the catalog and
each repository's tags as sorted lists, one object per generation, so that
object stores answer ``_catalog`` and ``tags/list`` without walking::

    /cargohold/index
    ├── catalog/<generation>                    every repository name
    └── tags/<name>/_tags/<generation>          the tags of repository <name>

A ``link`` file holds a digest string.  Repository names never contain a
component starting with ``_`` (the name grammar forbids it), so the
underscore directories cannot collide with a nested repository.
"""

from __future__ import annotations

ROOT = "/v2"
MAINTENANCE = "/cargohold"
GC = f"{MAINTENANCE}/gc"
GC_USED = f"{GC}/used"
GC_CONDEMNED = f"{GC}/condemned"
GC_LEASES = f"{GC}/lease"
GC_CLOCK = f"{GC}/clock"
INDEX = "/cargohold/index"
INDEX_CATALOG = f"{INDEX}/catalog"
INDEX_TAGS = f"{INDEX}/tags"
#: Generations are zero-padded so that lexical order is numeric order.
INDEX_GENERATION_DIGITS = 12
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"


#: Directories of a repository whose presence makes it one (the catalog's test).
REPOSITORY_MARKERS = ("_manifests", "_layers")
#: Repository name components never start with it; layout directories do.
LAYOUT_DIR_PREFIX = "_"


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def blob_data(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{BLOBS}/{alg}/{hexpart[:2]}/{hexpart}/data"


def blob_dir(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{BLOBS}/{alg}/{hexpart[:2]}/{hexpart}"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}/{name}/_layers/{alg}/{hexpart}/link"


def layer_dir(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}/{name}/_layers/{alg}/{hexpart}"


def manifest_revision_link(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{alg}/{hexpart}/link"


def manifest_revision_dir(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{alg}/{hexpart}"


def manifest_revisions(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/revisions"


def tags(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def tag_link(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}/current/link"


def referrers_dir(name: str, subject: str) -> str:
    alg, hexpart = _split(subject)
    return f"{REPOSITORIES}/{name}/_referrers/{alg}/{hexpart}"


def referrer_link(name: str, subject: str, referrer: str) -> str:
    alg, hexpart = _split(referrer)
    return f"{referrers_dir(name, subject)}/{alg}-{hexpart}"


def referrer_digest_from_key(key: str) -> str:
    """Inverse of the last component of :func:`referrer_link`."""
    alg, _, hexpart = key.rpartition("/")[2].partition("-")
    return f"{alg}:{hexpart}"


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}/data"


def upload_startedat(name: str, upload_id: str) -> str:
    return startedat_in(upload_dir(name, upload_id))


def startedat_in(session_dir: str) -> str:
    """The ``startedat`` file of an upload session directory (as listed
    under :func:`uploads`)."""
    return f"{session_dir}/startedat"


def is_uploads(key: str) -> bool:
    """Whether ``key``, under :data:`REPOSITORIES`, is a repository's
    ``_uploads`` directory."""
    return key.rpartition("/")[2] == "_uploads"


def may_hold_repositories(key: str) -> bool:
    """Whether ``key``, under :data:`REPOSITORIES`, is a name component (a
    repository, or a directory of nested ones), not one of a repository's
    own ``_layers``, ``_manifests``, ``_uploads``... directories."""
    return not key.rpartition("/")[2].startswith("_")


def link_owner(path: str) -> str:
    """What to delete to remove a link: a ``.../link`` file's directory (as
    the reference registry does), else the path itself (a referrer entry)."""
    head, _, leaf = path.rpartition("/")
    return head if leaf == "link" else path


def blob_prefixes(alg: str = "sha256") -> str:
    """The directory whose children are the ``<hex[:2]>`` fan-out of ``alg``."""
    return f"{BLOBS}/{alg}"


def digest_from_blob_data(path: str) -> str | None:
    """Inverse of :func:`blob_data` (``None`` for anything else)."""
    parts = path[len(BLOBS) + 1:].split("/")
    if len(parts) != 4 or parts[3] != "data" or not path.startswith(BLOBS + "/"):
        return None
    return f"{parts[0]}:{parts[2]}"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_layers"


# -- pull-through cache (cargohold.proxy) ----------------------------------------
#
#   repositories/<name>/_proxy/
#   ├── tags/<tag>/checked              when the tag was last checked upstream
#   └── pulled/<alg>/<hex>              when a manifest or blob was last pulled

def proxy_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_proxy"


def proxy_tag_checked(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_proxy/tags/{tag}/checked"


def proxy_pulled(name: str, digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{REPOSITORIES}/{name}/_proxy/pulled/{alg}/{hexpart}"


def digest_from_dir_key(key: str) -> str:
    """``sha256:<hex>`` from a key ending in ``.../<alg>/<hex>`` (a revision,
    layer or pulled-record directory as listed)."""
    alg, hexpart = key.rstrip("/").rsplit("/", 2)[-2:]
    return f"{alg}:{hexpart}"


def referrers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_referrers"


def gc_used(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{GC_USED}/{alg}/{hexpart[:2]}/{hexpart}"


def gc_used_prefix(alg: str, fanout: str) -> str:
    return f"{GC_USED}/{alg}/{fanout}"


def gc_condemned(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{GC_CONDEMNED}/{alg}/{hexpart}"


def gc_lease(epoch: int) -> str:
    return lease("gc", epoch)


def leases(task: str) -> str:
    """The leases of a maintenance task (``gc``: :data:`GC_LEASES`)."""
    return f"{MAINTENANCE}/{task}/lease"


def lease(task: str, epoch: int) -> str:
    return f"{leases(task)}/{epoch:012d}"


def last_run(task: str) -> str:
    return f"{MAINTENANCE}/{task}/lastrun"


def gc_clock(probe: str) -> str:
    return f"{GC_CLOCK}/{probe}"


def digest_from_leaf_pair(path: str) -> str:
    """``<alg>:<hex>`` from a path ending ``/<alg>/<hex>`` (a layer link's
    directory, a condemned marker)."""
    alg, hexpart = path.rsplit("/", 2)[-2:]
    return f"{alg}:{hexpart}"


def digest_from_link(path: str) -> str | None:
    """The digest a ``.../<alg>/<hex>/link`` path is named after (``None``
    for anything else)."""
    head, _, leaf = path.rpartition("/")
    return digest_from_leaf_pair(head) if leaf == "link" and head.count("/") >= 2 else None


def referrer_entry_digests(path: str) -> tuple[str, str]:
    """``(subject, referrer)`` of a :func:`referrer_link` path."""
    head, _, key = path.rpartition("/")
    return digest_from_leaf_pair(head), referrer_digest_from_key(key)


def digest_from_gc_used(path: str) -> str:
    """Inverse of :func:`gc_used`."""
    alg, _, hexpart = path[len(GC_USED) + 1:].split("/")
    return f"{alg}:{hexpart}"


# -- listing index (cargohold.registry.catalog) ---------------------------------


def index_tags(name: str) -> str:
    """The directory of the generations of ``name``'s tag list."""
    return f"{INDEX_TAGS}/{name}/_tags"


def index_generation(directory: str, generation: int) -> str:
    return f"{directory}/{generation:0{INDEX_GENERATION_DIGITS}d}"


def index_generation_number(path: str) -> int | None:
    """Inverse of :func:`index_generation`'s last component (``None`` for
    anything else)."""
    leaf = path.rpartition("/")[2]
    return int(leaf) if len(leaf) == INDEX_GENERATION_DIGITS and leaf.isdigit() else None


def repository_from_index_tags(path: str) -> str | None:
    """Inverse of :func:`index_tags` (``None`` for anything else)."""
    if not path.startswith(INDEX_TAGS + "/") or not path.endswith("/_tags"):
        return None
    return path[len(INDEX_TAGS) + 1:-len("/_tags")]


def repository_entry(path: str) -> tuple[str, str, list[str]] | None:
    """Split a path below :data:`REPOSITORIES` into the repository name, the
    layout directory under it (``_manifests``, ``_layers``, ...) and the
    components after that; ``None`` above the layout directories."""
    parts = path[len(REPOSITORIES) + 1:].split("/") if path.startswith(REPOSITORIES + "/") else []
    for i, part in enumerate(parts):
        if part.startswith(LAYOUT_DIR_PREFIX):
            return ("/".join(parts[:i]), part, parts[i + 1:]) if i else None
    return None


def tag_from_entry(marker: str, rest: list[str]) -> str | None:
    """The tag a :func:`repository_entry` lies under, if any."""
    return rest[1] if marker == "_manifests" and len(rest) >= 2 and rest[0] == "tags" else None


def repository_from_dir(path: str) -> str:
    """Inverse of :func:`repository`."""
    return path[len(REPOSITORIES) + 1:]
