"""Test certificates made with the real ``openssl`` command: a CA and a
server certificate for 127.0.0.1/localhost signed by it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import pytest

INSTALL_HINT = "openssl not found: install it with `apt-get install -y openssl`"


@dataclasses.dataclass
class TestCA:
    """Paths of a CA certificate (``ca``) and of a server certificate and
    key it signed (``certificate``, ``key``)."""

    __test__ = False  # not a test class, despite the name

    directory: str
    ca: str
    ca_key: str
    certificate: str
    key: str

    def issue(self, name: str, common_name: str = "127.0.0.1") -> tuple[str, str]:
        """Another server certificate and key from this CA, as
        ``(<name>.crt, <name>.key)`` in the same directory."""
        return _server_cert(self.directory, name, self.ca, self.ca_key, common_name)

    def client_cert_dir(self) -> str:
        """A directory holding only this CA as ``ca.crt``: what skopeo's and
        containers' ``--cert-dir`` expect (``<directory>/certs.d``)."""
        cert_dir = os.path.join(self.directory, "certs.d")
        os.makedirs(cert_dir, exist_ok=True)
        shutil.copyfile(self.ca, os.path.join(cert_dir, "ca.crt"))
        return cert_dir


def _openssl(*args: str, cwd: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed:\n{proc.stderr}", pytrace=False)


def _server_cert(directory: str, name: str, ca: str, ca_key: str, common_name: str) -> tuple[str, str]:
    crt, key, csr, ext = (os.path.join(directory, f"{name}.{s}") for s in ("crt", "key", "csr", "ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}", cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", crt, cwd=directory)
    return crt, key


def make_test_ca(directory: str | os.PathLike, name: str = "server") -> TestCA:
    """A fresh CA and a server certificate for 127.0.0.1 and localhost in
    ``directory``.  Fails the test (never skips) without openssl."""
    directory = os.fspath(directory)
    ca, ca_key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=cargohold test CA", cwd=directory)
    crt, key = _server_cert(directory, name, ca, ca_key, "127.0.0.1")
    return TestCA(directory, ca, ca_key, crt, key)
