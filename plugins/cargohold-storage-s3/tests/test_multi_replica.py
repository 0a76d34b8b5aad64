"""contrib/multi-replica: the real nginx of its nginx.conf load-balancing two
registries started with its cargohold.yml, sharing one bucket on a moto
server.  skopeo pushes and pulls through nginx byte-identically, and a
chunked upload whose requests alternate between the replicas completes."""

from __future__ import annotations

import hashlib
import types
import uuid
from pathlib import Path

import pytest
import requests

from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.nginx import Nginx, shipped_config
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.skopeo import Skopeo, find_skopeo

CONTRIB = Path(__file__).resolve().parents[3] / "contrib" / "multi-replica"
MiB = 1 << 20


def contrib_config(replacements: dict[str, str]) -> str:
    return shipped_config(CONTRIB / "nginx.conf", replacements)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, moto_server):
    tmp = tmp_path_factory.mktemp("multi-replica")
    bucket = moto_server.create_bucket()
    # The shipped file, pointed at moto (which takes any credentials).
    env = moto_server.registry_env(bucket, region="eu-west-1", rootdirectory=f"/{uuid.uuid4().hex[:8]}")
    env["CARGOHOLD_HTTP_WORKERS"] = "1"
    config = str(CONTRIB / "cargohold.yml")
    port = free_port()
    with LiveRegistry(env=env, config_file=config) as a, LiveRegistry(env=env, config_file=config) as b:
        access_log = tmp / "access.log"
        nginx_config = contrib_config({
            "listen 80;": f"listen 127.0.0.1:{port};",
            "server 127.0.0.1:5000 ": f"server 127.0.0.1:{a.port} ",
            "server 127.0.0.1:5001 ": f"server 127.0.0.1:{b.port} ",
            "access_log /var/log/nginx/cargohold.access.log;":
                "log_format replicas '$request_method $uri $status $upstream_addr';\n"
                f"    access_log {access_log} replicas;",
            "http {\n": "http {\n" + Nginx.temp_paths(tmp),
        })
        with Nginx(tmp, nginx_config, port) as nginx:
            front = types.SimpleNamespace(
                url=f"http://127.0.0.1:{port}", replicas=(a, b),
                access=lambda: access_log.read_text().splitlines(),
                log=lambda: f"{a.log()}\n--- replica b\n{b.log()}\n--- nginx\n{nginx.log()}")
            yield front


def served_by(front, method: str, fragment: str) -> set[int]:
    """Ports of the replicas that answered matching requests."""
    return {int(line.rsplit(":", 1)[1]) for line in front.access()
            if line.startswith(method + " ") and fragment in line and ":" in line.rsplit(" ", 1)[1]}


def test_skopeo_push_and_pull_through_the_load_balancer(cluster, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    skopeo = Skopeo(find_skopeo(), home, cluster)
    image = build_image(tmp_path / "src", "v1", layers=4, seed="multi-replica", big_layer=12 * MiB)
    remote = skopeo.docker("replicated/app", "v1")
    skopeo.copy(image.ref, remote, "--preserve-digests")
    skopeo.copy(remote, f"oci:{tmp_path / 'back'}:v1", "--preserve-digests")
    assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
    assert read_blobs(tmp_path / "back") == read_blobs(image.path)
    ports = {r.port for r in cluster.replicas}
    assert served_by(cluster, "HEAD", "/v2/replicated/app/") | served_by(cluster, "GET", "/v2/replicated/app/") \
        | served_by(cluster, "PUT", "/v2/replicated/app/") == ports, "both replicas served the image"


def test_chunked_upload_alternates_between_replicas(cluster):
    chunks = [hashlib.shake_256(f"chunk{i}".encode()).digest(size)
              for i, size in enumerate((6 * MiB, MiB, 5 * MiB + 7, 300 * 1024))]
    data = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    resp = requests.post(f"{cluster.url}/v2/replicated/chunked/blobs/uploads/", timeout=60)
    assert resp.status_code == 202, resp.text
    location, offset = resp.headers["Location"], 0
    assert location.startswith(cluster.url), "Location points back through nginx"
    for chunk in chunks:
        resp = requests.patch(location, data=chunk, timeout=60, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
        assert resp.status_code == 202, resp.text
        offset += len(chunk)
        location = resp.headers["Location"]
    resp = requests.put(location, params={"digest": digest}, timeout=60)
    assert resp.status_code == 201, resp.text
    upload_id = location.rsplit("/", 1)[1].split("?")[0]
    assert served_by(cluster, "PATCH", upload_id) == {r.port for r in cluster.replicas}, \
        "the PATCHes of one upload were spread over both replicas"
    for replica in cluster.replicas:
        got = requests.get(f"{replica.url}/v2/replicated/chunked/blobs/{digest}", timeout=60)
        assert got.status_code == 200 and got.content == data
