"""Backend services (object-store emulators and the like) run as real
processes on loopback for tests.

:class:`ServiceProcess` starts a command on a free ``127.0.0.1`` port, waits
until the port accepts connections, and stops the process by its PID; it can
be started again on the same port (to simulate an outage).  :func:`find_tool`
locates the executable, failing the test (never skipping) with an install
hint when it is missing.
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
