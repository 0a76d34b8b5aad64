"""Native TLS: certificates reloaded when their files change, and clear
start-up errors for unusable files."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from cargohold.config import ConfigError
from cargohold.server.tls import ReloadingContext
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.tls import make_test_ca


@pytest.fixture
def ca(tmp_path):
    return make_test_ca(tmp_path)


def install(src: tuple[str, str], dst: tuple[str, str]) -> None:
    """Replace certificate and key as a renewal tool would (new files
    moved over the old ones)."""
    for s, d in zip(src, dst):
        shutil.copyfile(s, d + ".new")
        os.replace(d + ".new", d)


def served_certificate(port: int, cafile: str) -> bytes:
    """The DER certificate a fresh connection to 127.0.0.1:port is given,
    verified against ``cafile``."""
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def der(pem_path: str) -> bytes:
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# -- ReloadingContext -------------------------------------------------------------


def test_reload_when_files_change(ca, caplog):
    now = [0.0]
    ctx = ReloadingContext({"certificate": ca.certificate, "key": ca.key}, clock=lambda: now[0])
    first = ctx.context
    assert not ctx.refresh()
    install(ca.issue("renewed"), (ca.certificate, ca.key))
    assert ctx.refresh()
    assert ctx.context is not first

    # A mismatched pair (new certificate, old key) keeps the last good context.
    good = ctx.context
    other_cert, _ = ca.issue("other")
    install((other_cert,), (ca.certificate,))
    assert not ctx.refresh()
    assert ctx.context is good
    assert "do not load; still serving the previous certificate" in caplog.text
    assert "http.tls.certificate: cannot load" in caplog.text


def test_checks_at_most_once_per_interval(ca, monkeypatch):
    now = [100.0]
    ctx = ReloadingContext({"certificate": ca.certificate, "key": ca.key}, interval=1.0, clock=lambda: now[0])
    checks = []
    monkeypatch.setattr(ctx, "refresh", lambda: checks.append(now[0]))
    wrapped = []
    monkeypatch.setattr(ctx, "context", type("Ctx", (), {"wrap_socket": lambda self, s, **kw: wrapped.append(s)})())
    for _ in range(5):
        ctx.wrap_socket("sock", server_side=True)
    assert checks == [] and len(wrapped) == 5
    now[0] += 1.0
    ctx.wrap_socket("sock", server_side=True)
    assert checks == [101.0]


def test_first_load_errors_name_the_key(ca, tmp_path):
    with pytest.raises(ConfigError, match="http.tls.certificate: cannot load"):
        ReloadingContext({"certificate": str(tmp_path / "missing.crt"), "key": ca.key})
    other_cert, _ = ca.issue("other")
    with pytest.raises(ConfigError, match="http.tls.certificate: cannot load .* with key"):
        ReloadingContext({"certificate": other_cert, "key": ca.key})


# -- a real server ------------------------------------------------------------------


def test_server_serves_renewed_certificate_without_restart(ca):
    env = {"CARGOHOLD_HTTP_TLS_CERTIFICATE": ca.certificate, "CARGOHOLD_HTTP_TLS_KEY": ca.key,
           "CARGOHOLD_LOG_LEVEL": "info"}
    with LiveRegistry(env=env, tls_ca=ca.ca) as registry:
        assert served_certificate(registry.port, ca.ca) == der(ca.certificate)
        kept = http_keepalive(registry)

        renewed = ca.issue("renewed")
        install(renewed, (ca.certificate, ca.key))
        deadline = time.monotonic() + 10
        while served_certificate(registry.port, ca.ca) != der(renewed[0]):
            assert time.monotonic() < deadline, registry.log()
            time.sleep(0.2)
        assert "TLS certificate reloaded" in registry.log()
        # a connection opened before keeps working
        kept.request("GET", "/v2/")
        assert kept.getresponse().status == 200

        # a broken renewal: the last good certificate stays in service
        other_cert, _ = ca.issue("other")
        install((other_cert,), (ca.certificate,))
        time.sleep(1.2)
        assert served_certificate(registry.port, ca.ca) == der(renewed[0])
        deadline = time.monotonic() + 5
        while "still serving the previous certificate" not in registry.log():
            assert time.monotonic() < deadline, registry.log()
            served_certificate(registry.port, ca.ca)
            time.sleep(0.2)
        kept.close()


def http_keepalive(registry):
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", registry.port, context=registry.ssl_context(), timeout=10)
    conn.request("GET", "/v2/")
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    return conn


@pytest.mark.parametrize("problem", ["missing", "mismatched", "not-pem"])
def test_unusable_files_are_a_clear_startup_error(ca, tmp_path, problem):
    cert, key = ca.certificate, ca.key
    if problem == "missing":
        cert = str(tmp_path / "nope.crt")
    elif problem == "mismatched":
        cert, _ = ca.issue("other")
    else:
        key = str(tmp_path / "garbage.key")
        with open(key, "w") as f:
            f.write("not a key\n")
    env = dict(os.environ, CARGOHOLD_HTTP_ADDR=f"127.0.0.1:{free_port()}", CARGOHOLD_HTTP_TLS_CERTIFICATE=cert,
               CARGOHOLD_HTTP_TLS_KEY=key, CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-m", "cargohold", "serve"], env=env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert f"http.tls.certificate: cannot load {cert} with key {key}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
