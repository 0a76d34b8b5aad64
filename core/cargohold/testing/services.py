"""Backend services (object-store emulators and the like) run as real
processes on loopback for tests.

:class:`ServiceProcess` starts a command on a free ``127.0.0.1`` port, waits
until the port accepts connections, and stops the process by its PID; it can
be started again on the same port (to simulate an outage).  :func:`find_tool`
locates the executable, failing the test (never skipping) with an install
hint when it is missing.  :class:`ReferenceRegistry` runs the reference
registry (Debian's ``docker-registry``) the same way, and its
``garbage-collect``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Callable, Sequence

import pytest
import yaml

from cargohold.testing.server import free_port, log_tail


def find_tool(name: str, env_var: str, candidates: Sequence[str] = (), install_hint: str = "") -> str:
    """The executable for ``name``: ``$env_var`` if set, else the first of
    ``candidates`` that is executable, else ``name`` on ``PATH``.  Fails the
    test with ``install_hint`` when none is found."""
    chosen = os.environ.get(env_var)
    if chosen:
        if os.access(chosen, os.X_OK):
            return chosen
        pytest.fail(f"{env_var}={chosen!r} is not an executable", pytrace=False)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found; {install_hint}".rstrip("; "), pytrace=False)


class ServiceProcess:
    """``command(port)`` run as a subprocess listening on ``127.0.0.1:<port>``.

    Output goes to a temporary log file (shown when start-up fails).  Use as
    a context manager, or call :meth:`start` and :meth:`stop`; after
    :meth:`stop`, :meth:`start` runs it again on the same port.
    """

    def __init__(self, name: str, command: Callable[[int], list[str]], port: int | None = None,
                 env: dict[str, str] | None = None, start_timeout: float = 30.0):
        self.name = name
        self.command = command
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.env = env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        fd, self.log_path = tempfile.mkstemp(prefix=f"{name}-{self.port}-", suffix=".log")
        os.close(fd)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return log_tail(self.log_path)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> "ServiceProcess":
        if self.proc is not None and self.proc.poll() is None:
            return self
        env = dict(os.environ)
        env.update(self.env or {})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(self.port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.address} within {self.start_timeout}s:\n"
                           f"{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait until the port
        no longer accepts connections."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the process and its children
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + timeout
        while self._accepts() and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


REFERENCE_INSTALL_HINT = ("install the reference registry with `apt-get install -y docker-registry` "
                          "(or run `sh .ci/system-deps test` as root)")

#: Where below its ``rootdirectory`` the reference's filesystem (and S3)
#: driver keeps the registry: cargohold's ``rootdirectory`` for the same
#: storage is the reference's plus this.
REFERENCE_SUBDIR = "docker/registry"


class ReferenceRegistry:
    """The reference registry (distribution's ``registry``; Debian's
    ``docker-registry`` package, binary ``docker-registry``) as a live
    service on ``127.0.0.1`` and a free port, for tests that compare with it
    or share its storage.

    Its ``config.yml`` is written to a temporary directory: filesystem
    storage under ``root`` (a temporary directory by default), deletes
    enabled, upload purging off.  ``config`` is deep-merged over that (a
    mapping replaces only the keys it names); when its ``storage`` names
    another driver, ``filesystem`` is dropped.  ``url`` is
    ``http://127.0.0.1:<port>``; ``cargohold_root`` is the ``rootdirectory``
    at which cargohold serves the same filesystem storage.  Use as a context
    manager, or call :meth:`start` and :meth:`stop` (by PID).  The binary is
    ``$CARGOHOLD_REFERENCE_REGISTRY`` or ``docker-registry`` on ``PATH``; a
    missing one fails the test with an install hint.
    """

    def __init__(self, root: str | os.PathLike | None = None, config: dict | None = None):
        self.binary = find_tool("docker-registry", "CARGOHOLD_REFERENCE_REGISTRY", install_hint=REFERENCE_INSTALL_HINT)
        self._tmp = tempfile.TemporaryDirectory(prefix="reference-registry-")
        self.root = os.fspath(root) if root is not None else os.path.join(self._tmp.name, "root")
        self.cargohold_root = os.path.join(self.root, REFERENCE_SUBDIR)
        self.config_path = os.path.join(self._tmp.name, "config.yml")
        self.service = ServiceProcess("docker-registry", lambda port: [self.binary, "serve", self.config_path])
        self.url = f"http://127.0.0.1:{self.service.port}"
        self.config = _merged({
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": self.root},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.service.port}", "secret": "cargohold-testing-reference"},
        }, config or {})
        named = set((config or {}).get("storage") or {}) - {"delete", "redirect", "maintenance", "cache", "tag"}
        if named - {"filesystem"}:
            del self.config["storage"]["filesystem"]
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f, sort_keys=False)

    def start(self) -> "ReferenceRegistry":
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def log(self) -> str:
        return self.service.log()

    def garbage_collect(self, dry_run: bool = False, delete_untagged: bool = False, timeout: float = 120) -> str:
        """Run ``docker-registry garbage-collect [--dry-run] [--delete-untagged]
        config.yml`` on this registry's storage (the reference expects no
        writes meanwhile: stopped, or read-only) and return its output,
        stdout and stderr interleaved.  Fails the test when it exits
        non-zero."""
        cmd = [self.binary, "garbage-collect", *(["--dry-run"] if dry_run else []),
               *(["--delete-untagged"] if delete_untagged else []), self.config_path]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}", pytrace=False)
        return proc.stdout

    def cleanup(self) -> None:
        self.service.cleanup()
        self._tmp.cleanup()

    def __enter__(self) -> "ReferenceRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _merged(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base
