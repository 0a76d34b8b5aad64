"""Run a real ``cargohold serve`` process for black-box tests."""

from __future__ import annotations

import contextlib
import inspect
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cargohold.testing.client import RegistryClient


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


def exception_recorder(path: str) -> str:
    """Source of a plugin whose ``cargohold_report_exception`` appends one
    line per call (``<error type>: <error>``) to ``path``: pass it to
    ``LiveRegistry(plugins=...)`` to see what a live server reports."""
    return (
        "from cargohold import hookimpl\n\n\n"
        "@hookimpl\n"
        "def cargohold_report_exception(error, request_info):\n"
        f"    with open({path!r}, 'a') as f:\n"
        "        f.write(f'{type(error).__name__}: {error}\\n')\n"
    )


def install_plugins(directory: str, plugins: dict[str, "str | ModuleType"]) -> str:
    """Make ``plugins`` (``{entry-point name: module or its source}``) installed
    plugins for a Python process that has ``directory`` on its
    ``PYTHONPATH``: each becomes a module with a ``.dist-info`` declaring it
    in the ``cargohold`` entry-point group, as ``pip install`` would.
    Returns ``directory``."""
    os.makedirs(directory, exist_ok=True)
    for name, source in plugins.items():
        if not isinstance(source, str):
            source = inspect.getsource(source)
        module = "cargohold_test_" + "".join(c if c.isalnum() else "_" for c in name)
        with open(os.path.join(directory, module + ".py"), "w") as f:
            f.write(source)
        info = os.path.join(directory, f"{module}-0.dist-info")
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0\n")
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write(f"[cargohold]\n{name} = {module}\n")
    return directory


class LiveRegistry:
    """A ``cargohold serve`` subprocess on ``127.0.0.1:<port>``.

    ``env`` entries are ``CARGOHOLD_*`` overrides added to the defaults (a
    temporary filesystem root, deletes enabled).  ``plugins`` maps entry-point
    names to module sources installed for this process only (see
    :func:`install_plugins`).  ``open_files`` = ``(soft, hard)`` starts the
    process with that ``RLIMIT_NOFILE``.  Use as a context manager, or call
    :meth:`start` and :meth:`stop`.  ``url`` is ``http://127.0.0.1:<port>``
    and ``root`` the storage directory.
    """

    def __init__(self, env: dict | None = None, config_file: str | None = None,
                 root: str | None = None, port: int | None = None, args: list[str] | None = None,
                 tls_ca: str | None = None, plugins: dict[str, str] | None = None,
                 open_files: tuple[int, int] | None = None):
        self._tmp = None
        self._plugin_dir = None
        if plugins:
            self._plugin_dir = tempfile.TemporaryDirectory(prefix="cargohold-live-plugins-")
            install_plugins(self._plugin_dir.name, plugins)
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
        if self._plugin_dir is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self._plugin_dir.name, env.get("PYTHONPATH")]))
        self._log = open(self.log_path, "wb")
        limit = self.open_files
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit)) if limit else None)
        # Served below http.prefix when the environment sets one.
        prefix = self.env.get("CARGOHOLD_HTTP_PREFIX", "").strip("/")
        probe = f"{self.url}{'/' + prefix if prefix else ''}/v2/"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cargohold serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(probe, timeout=1, context=self.ssl_context()) as resp:
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

    @contextlib.contextmanager
    def broken_storage(self):
        """While in the block, the filesystem storage root is a file: every
        storage call fails, and the registry answers 503 ``UNAVAILABLE``.
        The root comes back as an empty directory."""
        if os.path.isdir(self.root):
            shutil.rmtree(self.root)
        with open(self.root, "w") as f:
            f.write("not a directory")
        try:
            yield
        finally:
            os.unlink(self.root)
            os.mkdir(self.root)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting ``tls_ca``, or ``None`` without TLS."""
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else None

    def log(self) -> str:
        return log_tail(self.log_path)

    def client(self, headers: dict | None = None) -> "RegistryClient":
        """A :class:`cargohold.testing.client.RegistryClient` of this server."""
        from cargohold.testing.client import RegistryClient

        return RegistryClient(self.url, headers, ssl_context=self.ssl_context())

    def reload(self) -> None:
        """Send SIGHUP: the server re-reads its configuration file."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signal.SIGHUP)

    def workers(self) -> set[int]:
        """The PIDs of the processes serving requests: the workers under a
        supervisor (``http.workers`` > 1), else the server process itself."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = {int(pid) for pid in f.read().split()}
        except OSError:
            children = set()
        return children or {self.proc.pid}

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
        for tmp in (self._tmp, self._plugin_dir):
            if tmp is not None:
                tmp.cleanup()
        self._tmp = self._plugin_dir = None

    def __enter__(self) -> "LiveRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
