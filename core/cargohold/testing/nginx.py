"""A real nginx (Debian's ``nginx`` package) for end-to-end tests, run from
a config file with its prefix, pid, logs and temporary files in a temporary
directory, on loopback, and stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

INSTALL_HINT = "nginx not found: install it with `apt-get install -y nginx` (or run `sh .ci/system-deps test` as root)"


def shipped_config(path, replacements: dict[str, str]) -> str:
    """The nginx config shipped at ``path`` with its example addresses and
    paths replaced; each must appear exactly once, so a test follows the
    shipped file rather than a copy of it."""
    text = Path(path).read_text()
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} should appear once in {path}"
        text = text.replace(old, new)
    return text


def find_nginx() -> str:
    """The nginx binary; fails the test (never skips) when it is missing."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return binary


class Nginx:
    """``nginx -p <directory> -c <config>`` in the foreground, one process
    (``master_process off``, so it runs as the current user), error log and
    pid file in ``directory``, listening on ``port`` (which ``config_text``
    must use).  Put :meth:`temp_paths` in the config's ``http`` block.  Use
    as a context manager: it starts nginx and stops it by its PID."""

    def __init__(self, directory: str | os.PathLike, config_text: str, port: int):
        self.port = port
        self.directory = os.fspath(directory)
        self.config = os.path.join(self.directory, "nginx.conf")
        self.error_log = os.path.join(self.directory, "error.log")
        self.pid_file = os.path.join(self.directory, "nginx.pid")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.binary = find_nginx()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def temp_paths(directory: str | os.PathLike) -> str:
        """http-level directives putting nginx's temporary files under
        ``directory`` (Debian's build points them at /var/lib/nginx)."""
        d = os.fspath(directory)
        return "".join(f"    {kind}_temp_path {d}/{kind}_temp;\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))

    def _command(self, *extra: str) -> list[str]:
        globals_ = f"daemon off; master_process off; pid {self.pid_file}; error_log {self.error_log} info;"
        return [self.binary, "-p", self.directory + "/", "-c", self.config, "-g", globals_, *extra]

    def start(self, timeout: float = 10.0) -> "Nginx":
        port = self.port
        check = subprocess.run(self._command("-t"), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check.returncode != 0:
            pytest.fail(f"nginx rejects the config:\n{check.stderr}", pytrace=False)
        self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited with {self.proc.returncode}:\n{self.log()}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"nginx did not listen on 127.0.0.1:{port} within {timeout}s:\n{self.log()}", pytrace=False)

    def log(self) -> str:
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
