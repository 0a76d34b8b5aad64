"""A private containerd daemon and its ``ctr`` client, for end-to-end tests
of what containerd sends a registry (mirrors configured in ``hosts.toml``,
which add the ``ns`` query parameter).

:class:`Containerd` starts ``containerd`` as root with a minimal
configuration: root, state and sockets in a temporary directory, the CRI
plugin and the snapshotters it cannot use here disabled.  Nothing is
unpacked or run: tests fetch content (``ctr images pull --all-platforms``)
and read it back (``ctr content get``).  Debian's ``containerd`` package
provides both binaries; a missing one, or a daemon that cannot start (not
root), fails the test with the reason.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from cargohold.testing.server import log_tail
from cargohold.testing.services import find_tool

INSTALL_HINT = "install it with `apt-get install -y containerd` (or run `sh .ci/system-deps test` as root)"

CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


class Containerd:
    """A ``containerd`` process of its own (see the module docstring).  Use
    as a context manager; :meth:`ctr` runs the client against it in
    ``namespace``."""

    def __init__(self, namespace: str = "cargohold-test", start_timeout: float = 20.0):
        self.daemon = find_tool("containerd", "CARGOHOLD_CONTAINERD", install_hint=INSTALL_HINT)
        self.client = find_tool("ctr", "CARGOHOLD_CTR", install_hint=INSTALL_HINT)
        if os.geteuid() != 0:
            pytest.fail("containerd needs root to start its own daemon; run the test as root", pytrace=False)
        self._tmp = tempfile.TemporaryDirectory(prefix="containerd-")
        self.dir = Path(self._tmp.name)
        self.socket = str(self.dir / "containerd.sock")
        self.namespace = namespace
        self.start_timeout = start_timeout
        self.log_path = str(self.dir / "containerd.log")
        (self.dir / "config.toml").write_text(CONFIG.format(dir=self.dir))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Containerd":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.daemon, "--config", str(self.dir / "config.toml")], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited with {self.proc.returncode}:\n{log_tail(self.log_path)}",
                            pytrace=False)
            if os.path.exists(self.socket) and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"containerd did not answer within {self.start_timeout}s:\n{log_tail(self.log_path)}",
                    pytrace=False)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """``ctr --address <socket> --namespace <namespace> ARGS``; with
        ``check``, a non-zero exit fails the test with its output."""
        cmd = [self.client, "--address", self.socket, "--namespace", self.namespace, *args]
        proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{shlex.join(cmd)} exited with {proc.returncode}\n--- stdout\n"
                        f"{proc.stdout.decode(errors='replace')}\n--- stderr\n{proc.stderr.decode(errors='replace')}",
                        pytrace=False)
        return proc

    def hosts_dir(self, host: str, mirror_url: str) -> str:
        """A ``--hosts-dir`` in which pulls of ``host/...`` go to the mirror
        at ``mirror_url`` first (``ns=<host>``), the host itself last."""
        hosts = self.dir / "hosts.d"
        (hosts / host).mkdir(parents=True, exist_ok=True)
        (hosts / host / "hosts.toml").write_text(
            f'server = "https://{host}"\n\n[host."{mirror_url}"]\n  capabilities = ["pull", "resolve"]\n')
        return str(hosts)

    def content(self, digest: str) -> bytes:
        """The bytes of ``digest`` in containerd's content store."""
        return self.ctr("content", "get", digest).stdout

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log(self) -> str:
        return log_tail(self.log_path)

    def __enter__(self) -> "Containerd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self._tmp.cleanup()
