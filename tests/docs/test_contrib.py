"""contrib/'s deployment material, checked with the tools and schemas that
judge it: systemd-analyze for the unit, the Kubernetes API schemas that
kubernetes-validate ships, the compose specification's schema that
check-jsonschema ships (nothing is downloaded), nginx for the compose file's
proxy, and pip for the Containerfile's wheelhouse step."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml

from cargohold.app import load_config
from cargohold.testing.nginx import Nginx, shipped_config
from cargohold.testing.server import LiveRegistry, free_port

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
SYSTEMD_HINT = ("systemd-analyze not found: install it with `apt-get install -y systemd` "
                "(or run `sh .ci/system-deps test` as root)")


# -- systemd ------------------------------------------------------------------------


def systemd_verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail(SYSTEMD_HINT, pytrace=False)
    unit = tmp_path / "cargohold.service"
    # verify checks that ExecStart's binary exists: point it at this environment's.
    unit.write_text(unit_text.replace("/opt/cargohold/bin/cargohold", str(Path(sys.executable).with_name("cargohold"))))
    return subprocess.run([binary, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def unit_directives(text: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            directives.setdefault(m.group(1), []).append(m.group(2))
    return directives


def test_systemd_unit_passes_verify_without_a_warning(tmp_path):
    proc = systemd_verify((CONTRIB / "systemd" / "cargohold.service").read_text(), tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_systemd_verify_catches_a_misspelt_directive(tmp_path):
    """systemd-analyze exits 0 for an unknown directive; the check above
    catches it by its warning."""
    text = (CONTRIB / "systemd" / "cargohold.service").read_text().replace("ProtectSystem=", "ProtectSystm=")
    proc = systemd_verify(text, tmp_path)
    assert "ProtectSystm" in proc.stderr


def test_systemd_unit_is_sandboxed_and_reloads_on_sighup():
    d = unit_directives((CONTRIB / "systemd" / "cargohold.service").read_text())
    assert d["User"] == ["cargohold"] and d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/cargohold"] and d["StateDirectory"] == ["cargohold"]
    assert d["Environment"] == ["CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/cargohold"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and d["NoNewPrivileges"] == ["yes"]
    assert d["CapabilityBoundingSet"] == [""]
    sysusers = (CONTRIB / "systemd" / "cargohold.sysusers").read_text()
    assert re.search(r"^u cargohold - .* /var/lib/cargohold ", sysusers, re.M)


# -- Kubernetes -----------------------------------------------------------------------


def kubernetes_documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((CONTRIB / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def validate_kubernetes(doc: dict) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("name,doc", kubernetes_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_is_valid(name, doc):
    validate_kubernetes(doc)


def test_kubernetes_validation_rejects_an_unknown_field():
    docs = dict(kubernetes_documents())
    deployment = docs["deployment.yaml"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(deployment)


def test_kubernetes_example_runs_two_replicas_behind_a_service_with_readiness():
    docs = {doc["kind"]: doc for _, doc in kubernetes_documents()}
    assert set(docs) == {"Deployment", "Service", "ConfigMap", "Secret"}
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    [container] = deployment["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["envFrom"] == [{"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}]
    assert docs["Service"]["spec"]["selector"] == deployment["selector"]["matchLabels"]
    assert set(docs["Secret"]["stringData"]) == {"CARGOHOLD_STORAGE_S3_ACCESSKEY", "CARGOHOLD_STORAGE_S3_SECRETKEY"}


def test_configmap_is_a_valid_cargohold_config_on_s3_and_the_compose_file_is_the_same(tmp_path):
    configmap = dict(kubernetes_documents())["configmap.yaml"]
    text = configmap["data"]["config.yml"]
    compose_text = (CONTRIB / "compose" / "config.yml").read_text()
    assert yaml.safe_load(compose_text) == yaml.safe_load(text)
    (tmp_path / "config.yml").write_text(text)
    secret = dict(kubernetes_documents())["secret.yaml"]["stringData"]
    config, _ = load_config(str(tmp_path / "config.yml"), environ=secret)
    assert config["storage"]["s3"]["bucket"] == "registry" and config["storage"]["s3"]["secretkey"]
    assert "filesystem" not in config["storage"]


# -- compose ----------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess:
    checker = Path(sys.executable).with_name("check-jsonschema")
    assert checker.exists(), "check-jsonschema is missing: ./dev test installs it (the test extra of setup.cfg)"
    return subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_against_the_compose_spec():
    proc = check_compose(CONTRIB / "compose" / "compose.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_validation_rejects_a_bad_file(tmp_path):
    doc = yaml.safe_load((CONTRIB / "compose" / "compose.yaml").read_text())
    doc["services"]["nginx"]["ports"] = {"not": "a list"}
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(doc))
    assert check_compose(tmp_path / "compose.yaml").returncode != 0


def test_compose_runs_what_the_kubernetes_example_runs():
    doc = yaml.safe_load((CONTRIB / "compose" / "compose.yaml").read_text())
    replicas = [s for name, s in doc["services"].items() if name.startswith("cargohold-")]
    assert len(replicas) == 2
    for service in replicas:
        assert service["configs"][0]["source"] == "cargohold-config"
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert doc["configs"]["cargohold-config"]["file"] == "./config.yml"


def test_compose_nginx_balances_two_live_replicas(tmp_path):
    """The compose file's nginx.conf in front of two registries on one
    storage root: both answer through it, and a blob pushed through one
    replica's upload session reads back through nginx."""
    storage = str(tmp_path / "storage")
    with LiveRegistry(root=storage) as one, LiveRegistry(root=storage) as two:
        port = free_port()
        site = shipped_config(CONTRIB / "compose" / "nginx.conf", {
            "server cargohold-1:5000;": f"server 127.0.0.1:{one.port};",
            "server cargohold-2:5000;": f"server 127.0.0.1:{two.port};",
            "listen 5000;": f"listen 127.0.0.1:{port};",
        })
        config = "events {}\nhttp {\n" + Nginx.temp_paths(tmp_path) + site + "\n}\n"
        with Nginx(tmp_path, config, port):
            url = f"http://127.0.0.1:{port}"
            for _ in range(4):
                assert requests.get(f"{url}/v2/", timeout=10).status_code == 200
            assert requests.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
            body = b"contrib compose"
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            resp = requests.post(f"{url}/v2/team/app/blobs/uploads/?digest={digest}", data=body, timeout=10)
            assert resp.status_code == 201, resp.text
            for _ in range(2):  # both replicas serve it
                assert requests.get(f"{url}/v2/team/app/blobs/{digest}", timeout=10).content == body


# -- the Containerfile's wheelhouse ---------------------------------------------------------


def test_wheelhouse_builds_every_distribution_and_installs_on_its_own(tmp_path):
    """contrib/container/wheelhouse.sh, offline (--no-deps
    --no-build-isolation): a wheel per distribution; installed from the
    wheelhouse alone, every plugin loads from the installed wheels."""
    wheels = tmp_path / "wheels"
    build_dirs = lambda: {p: p.stat().st_mtime for p in [ROOT / "build", *ROOT.glob("plugins/*/build")]  # noqa: E731
                          if p.exists()}
    before = build_dirs()
    env = {**os.environ, "PYTHON": sys.executable, "PLUGINS": "cargohold-storage-s3 cargohold-auth-token"}
    subprocess.run(["sh", str(CONTRIB / "container" / "wheelhouse.sh"), str(wheels), "--no-deps",
                    "--no-build-isolation", "--no-index"], check=True, env=env, timeout=300, cwd=tmp_path)
    names = sorted(p.name.split("-")[0] for p in wheels.glob("*.whl"))
    assert names == ["cargohold", "cargohold_auth_token", "cargohold_storage_filesystem", "cargohold_storage_s3"]
    core = next(wheels.glob("cargohold-*.whl"))
    assert "cargohold/hookspecs.py" in zipfile.ZipFile(core).namelist()
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                    "--no-deps", "--target", str(target), *map(str, wheels.glob("*.whl"))], check=True, timeout=300)
    # The installed wheels come first on sys.path; third-party libraries from this environment.
    proc = subprocess.run([sys.executable, "-c", "import cargohold, json, sys; "
                           "from cargohold.plugins import build_plugin_manager, describe_plugins; "
                           "json.dump([cargohold.__file__, describe_plugins(build_plugin_manager())], sys.stdout)"],
                          env={"PYTHONPATH": str(target), "PATH": os.environ.get("PATH", "")}, capture_output=True,
                          text=True, timeout=120, check=True)
    core_file, plugins = json.loads(proc.stdout)
    assert core_file.startswith(str(target))
    dists = {p["dist"] for p in plugins}
    assert {"cargohold-storage-filesystem", "cargohold-storage-s3", "cargohold-auth-token"} <= dists
    assert build_dirs() == before, "the wheelhouse build wrote build/ into the checkout"
