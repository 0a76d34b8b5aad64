"""cargohold behind the real nginx of contrib/nginx: nginx terminates TLS
and checks Basic credentials, cargohold (with contrib/nginx/cargohold.yml)
serves.  skopeo pushes and pulls through it byte-identically; Location
headers point back through the proxy; large bodies stream."""

from __future__ import annotations

import hashlib
import os
import types
from pathlib import Path

import pytest
import requests

from cargohold.testing.auth import write_htpasswd
from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.nginx import Nginx, shipped_config
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.skopeo import Skopeo, find_skopeo
from cargohold.testing.tls import make_test_ca

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "nginx"
USER, PASSWORD = "alice", "wonderland"


def contrib_config(replacements: dict[str, str]) -> str:
    return shipped_config(CONTRIB / "nginx.conf", replacements)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """(nginx URL, CA directory for skopeo, CA file, registry, nginx)."""
    tmp = tmp_path_factory.mktemp("nginx-front")
    ca = make_test_ca(tmp)
    cert_dir = ca.client_cert_dir()
    htpasswd = write_htpasswd(tmp / "htpasswd", {USER: PASSWORD}, cost=10)
    port = free_port()
    with LiveRegistry(config_file=str(CONTRIB / "cargohold.yml")) as registry:
        config = contrib_config({
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "server 127.0.0.1:5000;": f"server 127.0.0.1:{registry.port};",
            "/etc/nginx/certs/registry.crt": ca.certificate,
            "/etc/nginx/certs/registry.key": ca.key,
            "/etc/nginx/cargohold.htpasswd": htpasswd,
            "/var/log/nginx/cargohold.access.log": str(tmp / "access.log"),
            "http {\n": "http {\n" + Nginx.temp_paths(tmp),
        })
        with Nginx(tmp, config, port) as nginx:
            yield types.SimpleNamespace(url=f"https://127.0.0.1:{port}", port=port, cert_dir=str(cert_dir),
                                        ca=ca.ca, registry=registry, nginx=nginx,
                                        log=lambda: registry.log() + "\n--- nginx\n" + nginx.log())


@pytest.fixture
def skopeo(front, tmp_path):
    return Skopeo(find_skopeo(), tmp_path / "skopeo-home", front)


@pytest.fixture(autouse=True)
def _home(tmp_path):
    (tmp_path / "skopeo-home").mkdir()


def test_skopeo_push_and_pull_through_nginx(front, skopeo, tmp_path):
    image = build_image(tmp_path / "src", "v1", layers=3, seed="nginx", big_layer=3 << 20)
    remote = skopeo.docker("behind/nginx", "v1")
    tls = ["--dest-tls-verify=true", "--dest-cert-dir", front.cert_dir]
    skopeo.run("copy", "--preserve-digests", *tls, "--dest-creds", f"{USER}:{PASSWORD}", image.ref, remote)
    skopeo.run("copy", "--preserve-digests", "--src-tls-verify=true", "--src-cert-dir", front.cert_dir,
               "--src-creds", f"{USER}:{PASSWORD}", remote, f"oci:{tmp_path / 'back'}:v1")
    assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
    expected, got = read_blobs(image.path), read_blobs(tmp_path / "back")
    assert sorted(got) == sorted(expected)
    assert all(got[d] == expected[d] for d in expected)

    denied = skopeo.run("copy", *tls, image.ref, skopeo.docker("behind/nginx", "anon"), check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "authentication required" in denied.stderr, denied.stderr
    wrong = skopeo.run("copy", *tls, "--dest-creds", f"{USER}:nope", image.ref,
                       skopeo.docker("behind/nginx", "wrong"), check=False)
    assert wrong.returncode != 0
    assert requests.get(f"{front.url}/v2/behind/nginx/tags/list", auth=(USER, PASSWORD),
                        verify=front.ca, timeout=30).json() == {"name": "behind/nginx", "tags": ["v1"]}


def test_unauthenticated_requests_get_the_registry_error(front):
    resp = requests.get(f"{front.url}/v2/", verify=front.ca, timeout=30)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="cargohold"'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]}
    assert resp.raw.headers.getlist("Docker-Distribution-API-Version") == ["registry/2.0"]
    resp = requests.get(f"{front.url}/v2/", auth=(USER, "wrong"), verify=front.ca, timeout=30)
    assert resp.status_code == 401
    ok = requests.get(f"{front.url}/v2/", auth=(USER, PASSWORD), verify=front.ca, timeout=30)
    assert ok.status_code == 200
    assert ok.raw.headers.getlist("Docker-Distribution-API-Version") == ["registry/2.0"]  # once, from cargohold


def test_locations_point_back_through_the_proxy_and_bodies_stream(front):
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace session.verify
    session.verify = front.ca
    resp = session.post(f"{front.url}/v2/behind/stream/blobs/uploads/", timeout=30)
    assert resp.status_code == 202, resp.text
    location = resp.headers["Location"]
    assert location.startswith(f"{front.url}/v2/behind/stream/blobs/uploads/"), location

    # 40 MiB, chunked (no Content-Length), in 1 MiB pieces: above nginx's
    # default 1 MiB body limit, and never spooled by nginx.
    piece = os.urandom(1 << 20)
    pieces = 40
    digest = hashlib.sha256(piece * pieces).hexdigest()
    resp = session.patch(location, data=(piece for _ in range(pieces)),
                         headers={"Content-Type": "application/octet-stream"}, timeout=120)
    assert resp.status_code == 202, resp.text
    assert resp.headers["Range"] == f"0-{pieces * len(piece) - 1}"
    location = resp.headers["Location"]
    assert location.startswith(front.url), location
    resp = session.put(f"{location}{'&' if '?' in location else '?'}digest=sha256:{digest}", timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"] == f"{front.url}/v2/behind/stream/blobs/sha256:{digest}"

    with session.get(resp.headers["Location"], stream=True, timeout=120) as got:
        assert got.status_code == 200
        h, size = hashlib.sha256(), 0
        for chunk in got.iter_content(1 << 16):
            h.update(chunk)
            size += len(chunk)
    assert size == pieces * len(piece) and h.hexdigest() == digest
    assert "buffered to a temporary file" not in front.nginx.log(), "nginx spooled a body instead of streaming it"
