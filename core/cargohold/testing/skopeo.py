"""A real skopeo client for end-to-end tests, with its configuration
(policy, auth file, registries, caches) isolated in a temporary directory."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from cargohold.testing.server import LiveRegistry

INSTALL_HINT = "skopeo not found: install it with `apt-get install -y skopeo` (or run `sh .ci/system-deps test` as root)"


def find_skopeo() -> str:
    """The skopeo binary; fails the test (never skips) when it is missing."""
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


SKOPEO_TIMEOUT = 120


class Skopeo:
    """Runs the skopeo binary against a registry: a :class:`LiveRegistry` or
    anything with its ``url`` and ``log()``."""

    def __init__(self, binary: str, home, registry: LiveRegistry):
        self.binary = binary
        self.registry = registry
        self.host = registry.url.split("://", 1)[-1]
        (home / "registries.d").mkdir()
        (home / "registries.conf").write_text("")
        (home / "auth.json").write_text("{}")
        self.global_args = ["--insecure-policy", "--registries.d", str(home / "registries.d")]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "CONTAINERS_REGISTRIES_CONF": str(home / "registries.conf"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        }

    def docker(self, repository: str, reference: str) -> str:
        """``docker://<registry>/<repository>:<tag>`` (or ``@<digest>``)."""
        sep = "@" if ":" in reference else ":"
        return f"docker://{self.host}/{repository}{sep}{reference}"

    def run(self, *args: str, check: bool = True, debug: bool = False) -> subprocess.CompletedProcess:
        """Run ``skopeo ARGS``; with ``check``, fail the test with skopeo's
        output and the registry's log when it exits non-zero.  ``debug`` logs
        skopeo's HTTP requests to stderr."""
        cmd = [self.binary, *self.global_args, *(["--debug"] if debug else []), *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=SKOPEO_TIMEOUT)
        if check and proc.returncode != 0:
            pytest.fail(f"{shlex.join(cmd)} exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
                        f"\n--- stderr\n{proc.stderr}\n--- registry log\n{self.registry.log()}", pytrace=False)
        return proc

    def copy(self, src: str, dst: str, *options: str, debug: bool = False) -> subprocess.CompletedProcess:
        return self.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *options, src, dst,
                        debug=debug)

    def inspect(self, ref: str, *options: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("inspect", "--tls-verify=false", *options, ref, check=check)

    def inspect_json(self, ref: str, *options: str) -> dict:
        return json.loads(self.inspect(ref, *options).stdout)
