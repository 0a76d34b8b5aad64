"""The application factory.

``create_app`` builds everything in a fixed order and runs nothing at import
time: configuration (defaults, YAML, environment) → plugin manager →
validation with every plugin's schema → storage driver, auth provider and
notification sinks by name → the ``v2`` blueprint, plugin blueprints and the
one error handler → WSGI wrappers → startup hooks.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from typing import Any, Iterable, Mapping

import pluggy
from flask import Flask, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from cargohold import config as config_mod
from cargohold.auth import AuthProvider
from cargohold.client_input import ClientInputMiddleware
from cargohold.errors import MethodNotAllowed, NotFound, RegistryError, SizeInvalid, Unavailable, Unknown
from cargohold.events.dispatch import build_notifier
from cargohold.metrics import ROUTE_KEY, UNMATCHED, UPLOAD_ENDPOINTS, UPLOAD_KEY, MeteredApp, RegistryMetrics
from cargohold.plugins import StartupError, build_plugin_manager, call_each, call_startup, chain_each, collect_named
from cargohold.registry import Registry
from cargohold.request_context import request_info
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import StorageDriver, StorageError

log = logging.getLogger("cargohold")

__all__ = ["LIVE_KEYS", "create_app", "reload_config", "RegistryState", "StartupError"]


@dataclasses.dataclass
class RegistryState:
    """Per-app state, at ``app.extensions["cargohold"]``."""

    config: dict
    pm: pluggy.PluginManager
    driver: StorageDriver
    registry: Registry
    auth: AuthProvider
    storage_name: str
    auth_name: str
    #: Prometheus metrics (:mod:`cargohold.metrics`).
    metrics: RegistryMetrics = dataclasses.field(default_factory=RegistryMetrics)


def create_app(config: Mapping[str, Any] | None = None, config_path: str | None = None,
               environ: Mapping[str, str] | None = None, plugins: Iterable[Any] = ()) -> Flask:
    """Build the registry app.

    :param config: overrides applied on top of the YAML file (tests pass a
        dict here, e.g. ``{"storage": {"inmemory": {}}}``).
    :param config_path: the YAML file; ``None`` for defaults only.
    :param environ: where ``CARGOHOLD_*`` overrides are read (default
        ``os.environ``).
    :param plugins: plugin objects registered with the installed ones (as
        :func:`cargohold.plugins.build_plugin_manager` does; tests use it).
    :raises cargohold.config.ConfigError: bad configuration, naming the key.
    :raises StartupError: a plugin, driver or provider problem, naming it.
    """
    cfg, pm = load_config(config_path, environ, overrides=config, plugins=plugins)
    _configure_logging(cfg)

    _warn_unserved(cfg, pm)
    storage_name, driver = _make_driver(pm, cfg)
    auth_name, auth = _make_auth(pm, cfg)
    notifier = build_notifier(pm, cfg, driver)
    if notifier is not None:
        # Filters and queues events; delivers them once started (startup hook).
        pm.register(notifier, name="cargohold.notifications")

    app = Flask("cargohold")
    app.config["CARGOHOLD"] = cfg
    app.config["MAX_CONTENT_LENGTH"] = None
    app.url_map.strict_slashes = False
    # "//x" must not be rewritten (and redirected) into another repository name.
    app.url_map.merge_slashes = False
    metrics = RegistryMetrics.from_environ()
    driver.stats.add_observer(metrics.storage_observer(storage_name))
    registry = Registry(driver, manifest_cache_bytes=cfg["storage"]["cache"]["manifestsize"],
                        gc_grace=cfg["storage"]["maintenance"]["gc"]["grace"],
                        listing_mode=cfg["storage"]["listing"]["mode"])
    app.extensions["cargohold"] = RegistryState(
        config=cfg, pm=pm, driver=driver, registry=registry, auth=auth,
        storage_name=storage_name, auth_name=auth_name, metrics=metrics,
    )

    from cargohold import ops
    from cargohold.api import v2

    app.register_blueprint(v2)
    if cfg["http"]["debug"]["addr"]:
        # Served by the server on http.debug.addr instead of the main address.
        app.cargohold_debug_app = ops.debug_app(app)
    else:
        app.register_blueprint(ops.blueprint(cfg))
    for blueprints in call_startup(pm, "cargohold_blueprints", app=app):
        for bp in blueprints:
            app.register_blueprint(bp)
    _install_handlers(app, pm, cfg)
    # A body that ends early is a 400, never an unexpected error.
    app.wsgi_app = ClientInputMiddleware(app.wsgi_app)
    from cargohold import proxy

    pull_through = proxy.install(app, cfg)  # None without a proxy section

    proxies = cfg["http"].get("trustedproxies") or 0
    if proxies > 0:
        # X-Forwarded-For/-Proto/-Host/-Port from that many proxies become the
        # request's remote address, scheme and host (absolute Locations,
        # logs); without it they are ignored, as any client can send them.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)

    prefix = cfg["http"].get("prefix", "").strip("/")
    if prefix:
        app.wsgi_app = PrefixMiddleware(app.wsgi_app, "/" + prefix)
    app.wsgi_app = MeteredApp(app.wsgi_app, metrics, on_finished=_request_finished(app, pm))

    # Each wrapper wraps the previous result, in hook call order.
    app.wsgi_app = chain_each(pm, "cargohold_wrap_wsgi", "wsgi_app", app.wsgi_app, app=app)
    call_startup(pm, "cargohold_startup", app=app)
    metrics.start_flushing()

    def shutdown() -> None:
        call_each(pm, "cargohold_shutdown", app=app)
        metrics.stop_flushing()
        closers = (auth.close, driver.close) if pull_through is None else (pull_through.close, auth.close, driver.close)
        for closer in closers:
            try:
                closer()
            except Exception:
                log.exception("error while closing %s", closer)

    app.cargohold_shutdown = shutdown
    app.cargohold_reload = lambda new_config: reload_config(app, new_config)
    return app


#: Keys (dotted prefixes) a running app applies from a reloaded configuration
#: (``SIGHUP`` under ``cargohold serve``).  A changed ``auth`` section builds a
#: new auth provider; the ``log`` keys are applied by the server's logging.
#: Every other key keeps its value until a restart.
LIVE_KEYS = ("storage.maintenance.readonly", "log.level", "log.formatter", "log.fields", "auth")


def reload_config(app: Flask, new_config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Apply the :data:`LIVE_KEYS` of ``new_config`` (validated, as
    :func:`load_config` returns it) to a running ``app``; returns the dotted
    keys applied and those that changed but wait for a restart, and logs
    both.  All or nothing: when a changed ``auth`` section cannot build its
    provider, :class:`~cargohold.config.ConfigError` or :class:`StartupError`
    is raised and nothing is applied.  The provider replaced is closed."""
    state: RegistryState = app.extensions["cargohold"]
    cfg = state.config
    changed = _changed_keys(cfg, new_config)
    live = [k for k in changed if any(k == p or k.startswith(p + ".") for p in LIVE_KEYS)]
    restart = [k for k in changed if k not in live]
    old_auth = None
    if any(k == "auth" or k.startswith("auth.") for k in live):
        auth_name, auth = _make_auth(state.pm, new_config)
        old_auth, state.auth, state.auth_name = state.auth, auth, auth_name
        cfg["auth"] = copy.deepcopy(new_config["auth"])
    cfg["storage"]["maintenance"]["readonly"] = copy.deepcopy(new_config["storage"]["maintenance"]["readonly"])
    for key in ("level", "formatter", "fields"):
        cfg["log"][key] = copy.deepcopy(new_config["log"][key])
    _configure_logging(cfg)
    if old_auth is not None:
        try:
            old_auth.close()
        except Exception:
            log.exception("error while closing the replaced auth provider")
    readonly = "on" if cfg["storage"]["maintenance"]["readonly"]["enabled"] else "off"
    log.info("configuration reloaded: read-only mode %s; applied: %s", readonly,
             ", ".join(live) if live else "nothing changed")
    if restart:
        log.warning("configuration reloaded: changes to %s take effect only after a restart", ", ".join(restart))
    return live, restart


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configurations (a
    section that differs in anything but nested keys counts as one key)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changed = []
        for key in sorted(set(old) | set(new), key=str):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                changed.append(dotted)
            else:
                changed += _changed_keys(old[key], new[key], dotted)
        return changed
    return [] if old == new else [prefix]


class PrefixMiddleware:
    """Serve the app below ``http.prefix`` (e.g. ``/registry/v2/...``): the
    prefix moves from ``PATH_INFO`` to ``SCRIPT_NAME``, so generated
    ``Location`` headers keep it.  Other paths get a 404."""

    def __init__(self, wsgi_app, prefix: str):
        self.wsgi_app, self.prefix = wsgi_app, prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
            environ["PATH_INFO"] = path[len(self.prefix):] or "/"
        else:
            environ["PATH_INFO"] = "/__outside_prefix__" + path
        return self.wsgi_app(environ, start_response)


def load_config(config_path: str | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None,
                plugins: Iterable[Any] = ()) -> tuple[dict, pluggy.PluginManager]:
    """The validated configuration and the plugin manager it was validated
    with: defaults, YAML, ``overrides``, environment; then every plugin's
    ``cargohold_config_schema``."""
    raw = config_mod.read_config(config_path, os.environ if environ is None else environ, overrides=overrides)
    pm = build_plugin_manager(config_mod.disabled_plugins(raw), plugins)
    schemas = config_mod.config_schemas(pm.hook.cargohold_config_schema())
    return config_mod.validate(raw, schemas), pm


def _make_driver(pm: pluggy.PluginManager, cfg: dict) -> tuple[str, StorageDriver]:
    factories = collect_named(pm, "cargohold_storage_drivers")
    name = config_mod.storage_driver(cfg)  # validation ensured exactly one
    params = cfg["storage"][name] or {}
    if name not in factories:
        raise StartupError(
            f"storage.{name}: no installed plugin offers a storage driver named {name!r} "
            f"(available: {', '.join(sorted(factories)) or 'none'})"
        )
    try:
        driver = factories[name](dict(params))
    except (ValueError, StorageError) as e:
        raise config_mod.ConfigError(f"storage.{name}: {e}") from e
    return name, CheckedDriver(driver)


def _make_auth(pm: pluggy.PluginManager, cfg: dict) -> tuple[str, AuthProvider]:
    factories = collect_named(pm, "cargohold_auth_providers")
    name = config_mod.auth_provider(cfg) or "none"
    params = (cfg.get("auth") or {}).get(name) or {}
    if name not in factories:
        raise StartupError(
            f"auth.{name}: no installed plugin offers an auth provider named {name!r} "
            f"(available: {', '.join(sorted(factories))})"
        )
    try:
        return name, factories[name](dict(params))
    except ValueError as e:
        raise config_mod.ConfigError(f"auth.{name}: {e}") from e


def _warn_unserved(cfg: dict, pm: pluggy.PluginManager) -> None:
    """Say so when configured sections have nothing to act on them, rather
    than ignoring them silently: a ``reporting.<name>`` section is served
    by the plugin that declares its schema."""
    declared = config_mod.config_schemas(pm.hook.cargohold_config_schema())
    for name in cfg.get("reporting") or {}:
        if f"reporting.{name}" not in declared:
            log.warning("reporting.%s is set, but no installed plugin declares that section", name)


#: Where the app leaves a request's ``request_info()`` for ``cargohold_request_finished``.
INFO_KEY = "cargohold.request_info"


def _request_finished(app: Flask, pm: pluggy.PluginManager):
    """``MeteredApp``'s ``on_finished``: call ``cargohold_request_finished``
    (in an app context, errors isolated) with the bytes counted both ways."""

    def finished(environ: dict, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        info = environ.pop(INFO_KEY, None)
        if info is None:  # no implementation when the request ran, or none got that far
            return
        info["bytes_in"], info["bytes_out"] = bytes_in, bytes_out
        with app.app_context():
            call_each(pm, "cargohold_request_finished", request_info=info, status=status, duration=seconds)

    return finished


def _configure_logging(cfg: dict) -> None:
    level = cfg["log"]["level"].upper()
    level = "WARNING" if level == "WARN" else level
    logging.getLogger("cargohold").setLevel(level)


def _install_handlers(app: Flask, pm: pluggy.PluginManager, cfg: dict) -> None:
    # Computed once: these run on every response.
    extra_headers = [("Docker-Distribution-API-Version", "registry/2.0")]
    for name, values in (cfg["http"].get("headers") or {}).items():
        extra_headers += [(name, v) for v in (values if isinstance(values, list) else [values])]

    metrics = app.extensions["cargohold"].metrics

    @app.after_request
    def _headers(resp):
        resp.headers.extend(extra_headers)
        return resp

    finished_hook = pm.hook.cargohold_request_finished

    @app.before_request
    def _start() -> None:
        req = request._get_current_object()  # one proxy lookup, not three
        endpoint = req.endpoint
        req.environ[ROUTE_KEY] = endpoint or UNMATCHED
        if endpoint in UPLOAD_ENDPOINTS:
            req.environ[UPLOAD_KEY] = True  # MeteredApp ends it with the response
            metrics.upload_started()

    @app.teardown_request
    def _finished(exc) -> None:
        # What reporters get about the request, taken while it is current;
        # cargohold_request_finished runs once the response body is sent.
        if finished_hook.get_hookimpls():
            request.environ[INFO_KEY] = request_info()

    def render(error: RegistryError):
        return pm.hook.cargohold_error_response(error=error, request=request)

    @app.errorhandler(RegistryError)
    def _registry_error(error: RegistryError):
        return render(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if isinstance(error, WerkzeugMethodNotAllowed):
            return render(MethodNotAllowed(detail={"method": request.method, "path": request.path[:200]}))
        if error.code == 404:
            return render(NotFound(detail={"path": request.path[:200]}))
        if isinstance(error, ClientDisconnected):
            # Werkzeug's stream limit found the body shorter than declared.
            return render(SizeInvalid("the request body ended early: the client stopped sending"))
        wrapped = Unknown(error.description or error.name)
        wrapped.status = error.code or 500
        return render(wrapped)

    @app.errorhandler(Exception)
    def _unhandled(error: Exception):
        call_each(pm, "cargohold_report_exception", error=error, request_info=request_info())
        if isinstance(error, StorageError):
            log.error("storage error on %s %s: %s", request.method, request.path, error)
            return render(Unavailable("the storage backend failed; try again"))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render(Unknown("internal server error"))
