"""Worker processes and the entry point: one worker, or a supervisor that
forks several on a shared socket, restarts them and passes signals on.

SIGHUP reloads the configuration: the process serving re-reads it (the
``reload_config`` given to :func:`serve`) and hands it to the app's
``cargohold_reload(config)``, which applies what can change live; logging is
set up again from its ``log`` section.  A supervisor checks the file first,
passes SIGHUP on to every worker only when it is valid, and keeps the result
for workers it starts later.  A configuration that fails is logged and the
running one kept."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gevent
import gevent.event
import gevent.os
from gevent import monkey

from cargohold import __version__, metrics
from cargohold.config import ConfigError, parse_addr, storage_driver

log = logging.getLogger("cargohold.server")

EXIT_CONFIG = 2  # a bad configuration: message printed, no traceback
EXIT_STARTUP = 3  # the app failed to start for another reason (traceback logged)

# A replacement worker that dies again this soon is restarted with backoff.
_MIN_LIFETIME = 2.0
_MAX_BACKOFF = 10.0
# How long the parent waits past the drain timeout before SIGKILLing workers.
_KILL_GRACE = 5.0
from cargohold.server.logs import configure_logging
from cargohold.server.sockets import bind_listener, raise_open_files_limit
from cargohold.server.tls import ReloadingContext, reloading_context
from cargohold.server.wsgi import DEFAULT_MAX_CONNECTIONS, RegistryServer, Timeouts

# -- one worker -----------------------------------------------------------------


@dataclass
class _Spec:
    """Everything a worker needs; built once in the parent."""

    listener: socket.socket
    app_factory: Callable[[], Any]
    config: Mapping[str, Any]
    ssl_context: ReloadingContext | None  # offers wrap_socket like an SSLContext
    expected_errors: tuple[type[BaseException], ...]
    host: str
    multiprocess: bool
    announce: Callable[[], None]  # logs the start line once serving
    debug_listener: socket.socket | None = None  # http.debug.addr: the app's cargohold_debug_app
    reload_config: Callable[[], Mapping[str, Any]] | None = None  # SIGHUP: the file re-read and validated
    live_config: Mapping[str, Any] | None = None  # the supervisor's last reload, for workers started after it


def _run_worker(spec: _Spec, parent_pid: int | None = None, ready_fd: int | None = None) -> int:
    """Build the app, serve until told to stop, drain; returns the exit code.
    A worker of a supervisor (``parent_pid``) reports readiness on ``ready_fd``."""
    early_hups: list[int] = []  # a SIGHUP while the app is built is applied once it runs
    signal.signal(signal.SIGHUP, lambda signum, frame: early_hups.append(signum))
    try:
        app = spec.app_factory()
    except spec.expected_errors as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"cargohold: {line}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except Exception:
        log.exception("the app failed to start")
        return EXIT_STARTUP

    config = spec.config
    http = config["http"]
    server = RegistryServer(
        spec.listener, app,
        access_log=not config.get("log", {}).get("accesslog", {}).get("disabled", False),
        environ={"wsgi.multiprocess": spec.multiprocess, "SERVER_NAME": spec.host or socket.gethostname()},
        ssl_context=spec.ssl_context,
        timeouts=Timeouts.from_config(http),
        max_connections=int(http.get("maxconnections") or DEFAULT_MAX_CONNECTIONS),
    )
    debug_server = None
    debug_app = getattr(app, "cargohold_debug_app", None)
    if spec.debug_listener is not None and debug_app is not None:
        debug_server = RegistryServer(spec.debug_listener, debug_app, access_log=False,
                                      environ={"SERVER_NAME": spec.host or socket.gethostname()})
    stop, hurry, hup = gevent.event.Event(), gevent.event.Event(), gevent.event.Event()

    def on_signal():
        (hurry if stop.is_set() else stop).set()

    handlers = [gevent.signal_handler(signal.SIGTERM, on_signal), gevent.signal_handler(signal.SIGHUP, hup.set)]
    if early_hups:
        hup.set()
    if spec.live_config is not None:  # started after a reload: apply it too
        _reload(app, spec, spec.live_config)
    reloader = gevent.spawn(_reload_on_hup, app, spec, hup)
    if parent_pid is None:
        handlers.append(gevent.signal_handler(signal.SIGINT, on_signal))
    else:
        gevent.spawn(_watch_parent, parent_pid, stop)
    server.start()
    if debug_server is not None:
        debug_server.start()
    if ready_fd is None:
        spec.announce()
    else:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    stop.wait()
    server.drain(float(config["http"].get("draintimeout", 30.0)), hurry)
    if debug_server is not None:
        debug_server.drain(1.0)
    reloader.kill()
    for h in handlers:
        h.cancel()
    shutdown = getattr(app, "cargohold_shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:
            log.exception("shutdown failed")
    return 0


def _reload_on_hup(app: Any, spec: _Spec, hup: gevent.event.Event) -> None:
    while True:
        hup.wait()
        hup.clear()
        _reload(app, spec)


def _guarded(spec: _Spec, step: Callable[[], Any]) -> Any:
    """``step()``, or ``None`` when it fails: an expected error (a bad
    configuration) is logged as such, anything else with its traceback."""
    failed = "configuration reload failed; keeping the running configuration"
    try:
        return step()
    except spec.expected_errors as e:
        log.error("%s:\n%s", failed, e)
    except Exception:
        log.exception(failed)
    return None


def _reread(spec: _Spec) -> Mapping[str, Any] | None:
    """The configuration re-read for a SIGHUP, or ``None`` (logged) when
    there is none or it fails validation."""
    if spec.reload_config is None:
        log.warning("SIGHUP ignored: nothing to reload the configuration from")
        return None
    return _guarded(spec, spec.reload_config)


def _reload(app: Any, spec: _Spec, config: Mapping[str, Any] | None = None) -> None:
    """Apply ``config`` (default: the file re-read) to this process's app
    and logging; on any failure log it and keep the running configuration."""
    config = config if config is not None else _reread(spec)
    if config is None:
        return
    reload = getattr(app, "cargohold_reload", None)
    if callable(reload) and _guarded(spec, lambda: reload(config) or True) is None:
        return
    configure_logging(config["log"])


def _watch_parent(parent_pid: int, stop: gevent.event.Event) -> None:
    # A worker whose supervisor died (SIGKILL, OOM) drains instead of
    # serving on as an orphan nobody will stop.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("the supervisor process went away; stopping")
            stop.set()
            return
        gevent.sleep(1.0)


# -- the supervisor ---------------------------------------------------------------


class _Supervisor:
    """Forks ``count`` workers sharing the listener and keeps them running.
    Uses the original (unpatched) fork/waitpid/signal/select: gevent's would
    reap children behind our back."""

    def __init__(self, spec: _Spec, count: int):
        self.spec = spec
        self.count = count
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
        self.restarts: dict[int, float] = {}  # slot -> when to restart
        self.backoff: dict[int, float] = {}
        self.pending: list[int] = []
        self.stopping_since: float | None = None
        self.exit_code = 0
        self._signal = monkey.get_original("signal", "signal")
        self._waitpid = monkey.get_original("os", "waitpid")
        self._select = monkey.get_original("select", "select")

    def run(self) -> int:
        rfd, wfd = os.pipe()  # signal wake-ups
        ready_r, ready_w = os.pipe()  # one byte per worker that started serving
        for fd in (rfd, wfd, ready_r):
            os.set_blocking(fd, False)
        self._pipe = (rfd, wfd, ready_r, ready_w)
        announced, ready = False, 0
        old_wakeup = signal.set_wakeup_fd(wfd)
        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)
        old = {sig: self._signal(sig, self._on_signal) for sig in watched}
        try:
            for slot in range(self.count):
                self._spawn(slot)
            while self.children or (self.stopping_since is None and self.restarts):
                self._select([rfd, ready_r], [], [], self._timeout())
                for fd in (rfd, ready_r):
                    try:
                        data = os.read(fd, 512)
                    except BlockingIOError:
                        continue
                    if fd == ready_r:
                        ready += len(data)
                if not announced and ready >= self.count and self.stopping_since is None:
                    announced = True
                    self.spec.announce()
                self._handle_signals()
                self._reap()
                self._tick()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old.items():
                self._signal(sig, handler)
            for fd in self._pipe:
                os.close(fd)
        log.info("all workers stopped")
        return self.exit_code

    def _on_signal(self, signum, frame):
        self.pending.append(signum)

    def _timeout(self) -> float:
        now = time.monotonic()
        waits = [1.0]
        if self.restarts and self.stopping_since is None:
            waits.append(min(self.restarts.values()) - now)
        return max(0.0, min(waits))

    def _handle_signals(self) -> None:
        pending, self.pending = self.pending, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping_since is None:
                    log.info("stopping: draining %d worker(s)", len(self.children))
                    self.stopping_since = time.monotonic()
                    # The workers close their copies as they start draining;
                    # ours would keep queueing connections nobody accepts.
                    self.spec.listener.close()
                self._kill_all(signal.SIGTERM)  # a second one makes workers hurry
            elif signum == signal.SIGHUP and self.stopping_since is None:
                self._reload()

    def _reload(self) -> None:
        """Check the configuration here, keep it for workers started later,
        and pass SIGHUP on: each worker re-reads and applies it itself."""
        config = _reread(self.spec)
        if config is None:
            return
        self.spec.live_config = config
        configure_logging(config["log"])
        log.info("configuration is valid; reloading %d worker(s)", len(self.children))
        self._kill_all(signal.SIGHUP)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = self._waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, started = self.children.pop(pid, (None, 0.0))
            if slot is None:
                continue
            metrics.worker_exited(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping_since is not None:
                continue
            if code in (EXIT_CONFIG, EXIT_STARTUP):
                log.error("worker %d failed to start (exit %d); stopping", pid, code)
                self.exit_code = code
                self.stopping_since = time.monotonic()
                self._kill_all(signal.SIGTERM)
                continue
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            lived = time.monotonic() - started
            delay = 0.0
            if lived < _MIN_LIFETIME:
                delay = min(_MAX_BACKOFF, max(0.5, self.backoff.get(slot, 0.0) * 2))
            self.backoff[slot] = delay
            log.warning("worker %d died (%s); restarting it%s", pid, how,
                        f" in {delay:.1f}s" if delay else "")
            self.restarts[slot] = time.monotonic() + delay

    def _tick(self) -> None:
        now = time.monotonic()
        if self.stopping_since is not None:
            self.restarts.clear()
            drain = float(self.spec.config["http"].get("draintimeout", 30.0))
            if self.children and now - self.stopping_since > drain + _KILL_GRACE:
                log.warning("workers did not stop in time; killing them")
                self._kill_all(signal.SIGKILL)
            return
        for slot, when in list(self.restarts.items()):
            if when <= now:
                del self.restarts[slot]
                self._spawn(slot)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # The parent has imported the app and every plugin (reading the
        # configuration): the workers share those pages copy-on-write.
        # Frozen, the objects are out of reach of the workers' cyclic
        # garbage collector, whose passes would otherwise write to each
        # object's header and so copy nearly every shared page into each
        # worker (measured: about a third of a worker's memory).
        gc.collect()
        gc.freeze()
        pid = gevent.os.fork_gevent()
        if pid:
            self.children[pid] = (slot, time.monotonic())
            return
        code = EXIT_STARTUP
        try:
            signal.set_wakeup_fd(-1)
            ready_w = self._pipe[3]
            for fd in self._pipe[:3]:
                os.close(fd)
            self._signal(signal.SIGCHLD, signal.SIG_DFL)
            self._signal(signal.SIGTERM, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the parent forwards it.
            self._signal(signal.SIGINT, signal.SIG_IGN)
            code = _run_worker(self.spec, parent_pid=parent, ready_fd=ready_w)
        except BaseException:
            log.exception("worker crashed")
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


# -- entry point ------------------------------------------------------------------


def worker_count(value: Any) -> int:
    """``http.workers`` as a number: ``0``/``"auto"`` is one per CPU."""
    if value in (None, 0, "auto"):
        return os.cpu_count() or 1
    return int(value)


def serve(app_factory: Callable[[], Any], config: Mapping[str, Any], *,
          expected_errors: tuple[type[BaseException], ...] = (ConfigError,),
          reload_config: Callable[[], Mapping[str, Any]] | None = None) -> int:
    """Serve ``app_factory()`` (a WSGI app, normally the Flask app) as
    ``config["http"]`` says until SIGTERM/SIGINT, then drain; returns the
    process exit code: 0, :data:`EXIT_CONFIG` when the factory raised one of
    ``expected_errors`` (its message is printed as ``cargohold: ...``,
    without a traceback) or :data:`EXIT_STARTUP` for any other start-up
    failure.  The factory runs in each worker, after the fork.  ``config`` is
    a validated configuration (:func:`cargohold.config.validate`); the
    ``http`` and ``log`` sections are used.  ``reload_config`` returns the
    configuration again, re-read, on SIGHUP (raising one of
    ``expected_errors`` when it is bad); without it SIGHUP is ignored.
    Raises :class:`ConfigError` if the address cannot be bound or the TLS
    files cannot be loaded.
    """
    http = config["http"]
    raise_open_files_limit()  # before the fork: the workers inherit it
    host, port = parse_addr(http["addr"])
    workers = worker_count(http.get("workers", 1))
    context = reloading_context(http.get("tls") or {})
    listener = bind_listener(host, port)
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    try:
        driver = storage_driver(config)
    except (KeyError, IndexError, TypeError):
        driver = "?"

    def announce() -> None:
        log.info("cargohold %s listening on %s://%s:%d (%d worker%s, storage: %s)", __version__,
                 "https" if context else "http", shown, bound[1], workers, "" if workers == 1 else "s", driver)

    spec = _Spec(listener, app_factory, config, context, tuple(expected_errors), host, workers > 1, announce,
                 reload_config=reload_config)
    try:
        spec.debug_listener = _debug_listener(http)
        if workers == 1:
            return _run_worker(spec)
        with metrics.shared_between_workers():
            return _Supervisor(spec, workers).run()
    finally:
        listener.close()
        if spec.debug_listener is not None:
            spec.debug_listener.close()


def _debug_listener(http: Mapping[str, Any]) -> socket.socket | None:
    """The socket of ``http.debug.addr`` (/metrics, /healthz), if configured."""
    addr = (http.get("debug") or {}).get("addr")
    if not addr:
        return None
    try:
        sock = bind_listener(*parse_addr(addr))
        log.info("metrics and health checks on http://%s (http.debug.addr)", addr)
        return sock
    except ConfigError as e:
        raise ConfigError(*(p.replace("http.addr", "http.debug.addr") for p in e.problems)) from None
