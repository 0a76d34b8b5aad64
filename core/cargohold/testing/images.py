"""Build OCI image layouts on disk, without network, for tests and examples.

An OCI image layout (image-spec ``image-layout.md``) is a directory holding
``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``; skopeo reads and
writes it as ``oci:<dir>:<tag>``.  Every blob is real: layers are gzip'd tar
archives of a few files, and each config lists its layers' diff IDs.  Output
is deterministic for given arguments; ``seed`` varies the content so that
tests do not share blobs unless they mean to.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip'd tar of ``files`` (path -> content) and its diff ID (the digest
    of the uncompressed tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), sha256(raw)


@dataclass
class Image:
    """What a tag in a layout points at."""

    path: Path
    tag: str
    digest: str
    media_type: str

    @property
    def ref(self) -> str:
        """The skopeo reference, ``oci:<dir>:<tag>``."""
        return f"oci:{self.path}:{self.tag}"


class LayoutWriter:
    """Writes blobs into an OCI image layout and tags descriptors in its index."""

    def __init__(self, path: Path):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = self.path / "index.json"
        # Keep the tags an existing layout has, so one directory can hold several images.
        self.tags: list[dict] = json.loads(index.read_text())["manifests"] if index.exists() else []

    def blob(self, data: bytes, media_type: str, **extra) -> dict:
        """Store ``data``; return its descriptor."""
        digest = sha256(data)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def json_blob(self, doc: dict, media_type: str, **extra) -> dict:
        return self.blob(json.dumps(doc, indent=2, sort_keys=True).encode(), media_type, **extra)

    def image(self, layers: int = 3, arch: str = "amd64", seed: str = "", big_layer: int = 0) -> dict:
        """An image manifest with ``layers`` gzip'd layers and its config; return
        the manifest's descriptor (with its platform).  ``big_layer`` > 0 adds a
        first layer holding that many incompressible bytes."""
        layer_descs, diff_ids = [], []
        if big_layer:
            data = hashlib.shake_256(f"{seed}/{arch}/big".encode()).digest(big_layer)
            blob, diff_id = tar_gz({"big/data.bin": data})
            layer_descs.append(self.blob(blob, OCI_LAYER_GZIP))
            diff_ids.append(diff_id)
        for i in range(layers):
            files = {
                f"layer{i}/README": f"layer {i} of a {arch} test image {seed}\n".encode(),
                # Incompressible, from 256 KiB down: uploads stream real bytes.
                f"layer{i}/data.bin": hashlib.shake_256(f"{seed}/{arch}/{i}".encode()).digest(
                    max(1024, 256 * 1024 >> 2 * i)),
                "etc/motd": f"written by layer {i}\n".encode(),
            }
            blob, diff_id = tar_gz(files)
            layer_descs.append(self.blob(blob, OCI_LAYER_GZIP))
            diff_ids.append(diff_id)
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"], "Env": [f"SEED={seed}"], "Labels": {"test.seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                        for i in range(len(layer_descs))],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.json_blob(config, OCI_CONFIG),
            "layers": layer_descs,
        }
        return self.json_blob(manifest, OCI_MANIFEST, platform={"architecture": arch, "os": "linux"})

    def index(self, manifests: list[dict]) -> dict:
        """An image index over ``manifests``; return its descriptor."""
        return self.json_blob({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, OCI_INDEX)

    def tag(self, tag: str, descriptor: dict) -> Image:
        """Name ``descriptor`` ``tag`` in ``index.json``."""
        desc = {k: v for k, v in descriptor.items() if k != "platform"}
        self.tags = [d for d in self.tags if d.get("annotations", {}).get(REF_NAME) != tag]
        self.tags.append({**desc, "annotations": {REF_NAME: tag}})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.tags}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))
        return Image(self.path, tag, desc["digest"], desc["mediaType"])


def build_image(path: Path, tag: str = "v1", layers: int = 3, arch: str = "amd64", seed: str = "",
                big_layer: int = 0) -> Image:
    """A layout at ``path`` whose ``tag`` is a single-platform image (see
    :meth:`LayoutWriter.image` for ``big_layer``)."""
    writer = LayoutWriter(path)
    return writer.tag(tag, writer.image(layers, arch, seed, big_layer))


def build_index(path: Path, tag: str = "multi", archs=("amd64", "arm64"), layers: int = 2,
                seed: str = "") -> Image:
    """A layout at ``path`` whose ``tag`` is a multi-platform image index, one
    image per architecture in ``archs``."""
    writer = LayoutWriter(path)
    return writer.tag(tag, writer.index([writer.image(layers, arch, seed) for arch in archs]))


def read_blobs(path: Path) -> dict[str, bytes]:
    """Every blob in the layout at ``path``, by digest."""
    return {f"sha256:{p.name}": p.read_bytes() for p in (Path(path) / "blobs" / "sha256").iterdir()}


def tagged(path: Path, tag: str) -> dict:
    """The descriptor ``index.json`` at ``path`` names ``tag``."""
    index = json.loads((Path(path) / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get(REF_NAME) == tag:
            return desc
    raise KeyError(f"{tag!r} is not in {path}/index.json")


def main(argv: list[str] | None = None) -> int:
    """``python -m cargohold.testing.images DIR [--tag T] [--index] [--layers N]``:
    write a sample OCI image layout (offline), ready for
    ``skopeo copy oci:DIR:T docker://...``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cargohold.testing.images",
                                 description="Write a sample OCI image layout (no network needed).")
    ap.add_argument("dir", type=Path, help="the layout directory (created or extended)")
    ap.add_argument("--tag", default="1.0")
    ap.add_argument("--index", action="store_true", help="a multi-platform index (linux/amd64 + linux/arm64)")
    ap.add_argument("--layers", type=int, default=3)
    args = ap.parse_args(argv)
    if args.index:
        image = build_index(args.dir, args.tag, layers=args.layers, seed=args.tag)
    else:
        image = build_image(args.dir, args.tag, layers=args.layers, seed=args.tag)
    print(f"oci:{args.dir}:{image.tag}  {image.media_type}  {image.digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
