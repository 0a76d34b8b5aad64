"""Run a real ``cargohold serve`` process for black-box tests."""

from __future__ import annotations

import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def log_tail(path: str, limit: int = 8000) -> str:
    """The last ``limit`` characters of a process's log file (for failure
    messages); empty when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")[-limit:]
    except OSError:
        return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveRegistry:
    """A ``cargohold serve`` subprocess on ``127.0.0.1:<port>``.

    ``env`` entries are ``CARGOHOLD_*`` overrides added to the defaults (a
    temporary filesystem root, deletes enabled).  Use as a context manager, or
    call :meth:`start` and :meth:`stop`.  ``url`` is ``http://127.0.0.1:<port>``
    and ``root`` the storage directory.  ``open_files`` = ``(soft, hard)``
    starts the process with that ``RLIMIT_NOFILE``.
    """

    def __init__(self, env: dict | None = None, config_file: str | None = None,
                 root: str | None = None, port: int | None = None, args: list[str] | None = None,
                 tls_ca: str | None = None, open_files: tuple[int, int] | None = None):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cargohold-live-")
            root = self._tmp.name
        self.root = root
        self.port = port or free_port()
        # With TLS configured, pass the CA that signed the server's certificate:
        # url is then https and the readiness probe verifies against it.
        self.tls_ca = tls_ca
        self.url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.config_file = config_file
        self.args = list(args or [])
        self.open_files = open_files
        self.env = {
            "CARGOHOLD_HTTP_ADDR": f"127.0.0.1:{self.port}",
            "CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": root,
            "CARGOHOLD_STORAGE_DELETE_ENABLED": "true",
            "CARGOHOLD_LOG_LEVEL": "warning",
        }
        self.env.update(env or {})
        if self.env.get("CARGOHOLD_STORAGE", "filesystem") != "filesystem" \
                and "CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY" not in (env or {}):
            # Another driver is picked: the default root would configure a second one.
            del self.env["CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY"]
        self.proc: subprocess.Popen | None = None
        fd, self.log_path = tempfile.mkstemp(prefix=f"cargohold-live-{self.port}-", suffix=".log")
        os.close(fd)

    def start(self, timeout: float = 20.0) -> "LiveRegistry":
        cmd = [sys.executable, "-m", "cargohold", "serve"]
        if self.config_file:
            cmd += ["--config", self.config_file]
        cmd += self.args
        env = dict(os.environ)
        env.update(self.env)
        self._log = open(self.log_path, "wb")
        limit = self.open_files
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit)) if limit else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cargohold serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1, context=self.ssl_context()) as resp:
                    if resp.status == 200:
                        return self
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, with auth on
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"cargohold serve did not answer on {self.url} within {timeout}s:\n{self.log()}")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting ``tls_ca``, or ``None`` without TLS."""
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else None

    def log(self) -> str:
        return log_tail(self.log_path)

    def kill(self) -> None:
        """SIGKILL the server and its workers (crash simulation)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "LiveRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
