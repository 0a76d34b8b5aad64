"""Building the plugin manager and calling hooks safely.

One manager per app (``app.extensions["cargohold"].pm``), built in a fixed
order: hookspecs, blocked names, installed plugins (entry-point group
``cargohold``), built-in defaults, then ``check_pending``.  Built-in defaults
register exactly like external plugins; where a hook has one answer they are
``trylast`` so installed plugins win.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import sys
from typing import Any, Iterable

import pluggy

from cargohold import PROJECT_NAME, hookspecs
from cargohold.config import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = (
    "cargohold.builtin.errors",
    "cargohold.builtin.auth",
    "cargohold.builtin.storage",
    "cargohold.builtin.maintenance",
)

TRACE_ENV = "CARGOHOLD_TRACE"


class StartupError(Exception):
    """The registry cannot start: a plugin failed to load, two plugins offer
    the same name, or a configured driver/provider does not exist.  The
    message says which."""


def build_plugin_manager(disabled: Iterable[str] = (), plugins: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A manager holding the installed plugins (entry points) not in
    ``disabled``, then ``plugins`` (objects with hook implementations,
    registered like installed ones under their ``name`` attribute, if any),
    then the built-in defaults."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.cargohold_distributions = {}  # entry-point name -> (distribution, version)
    for name in disabled:
        pm.set_blocked(name)
    _load_entrypoints(pm)
    for plugin in plugins:
        pm.register(plugin, name=getattr(plugin, "name", None) or None)
    for modname in DEFAULT_PLUGINS:
        if pm.is_blocked(modname):
            continue
        pm.register(importlib.import_module(modname), name=modname)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise StartupError(f"plugin {e.plugin!r} implements an unknown hook: {e}") from e
    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Like ``pm.load_setuptools_entrypoints`` but a plugin that fails to
    import or register is named in the error."""
    seen = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != PROJECT_NAME or ep.name in seen:
                continue
            seen.add(ep.name)
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as e:
                raise StartupError(
                    f"plugin {ep.name!r} from {dist.metadata['name']} {dist.version} failed to load: {e}"
                ) from e
            pm.cargohold_distributions[ep.name] = (dist.metadata["name"], dist.version)


def collect_named(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Any]:
    """Merge the ``{name: factory}`` dicts returned by a registration hook,
    called through pluggy.  A name offered twice fails start-up naming the
    plugins that offer it."""
    merged: dict[str, Any] = {}
    for result in call_startup(pm, hook_name):
        for name, factory in (result or {}).items():
            if name in merged:
                owners = " and ".join(repr(p) for p in _offering(pm, hook_name, name))
                raise StartupError(f"{hook_name}: {name!r} is offered by both {owners}")
            merged[name] = factory
    return merged


def _offering(pm: pluggy.PluginManager, hook_name: str, name: str) -> list[str]:
    """The plugins whose implementation of a registration hook offers
    ``name``, each asked on its own (a subset call: only for the error)."""
    impls = _call_order(getattr(pm.hook, hook_name))
    owners = []
    for impl in impls:
        alone = pm.subset_hook_caller(hook_name, remove_plugins=[i.plugin for i in impls if i is not impl])
        if any(name in (result or {}) for result in alone()):
            owners.append(impl.plugin_name)
    return owners


def _call_order(hook) -> list:
    """A hook's non-wrapper implementations in the order pluggy calls them
    (last registered first, ``tryfirst`` before, ``trylast`` after)."""
    return [impl for impl in reversed(hook.get_hookimpls()) if not (impl.wrapper or impl.hookwrapper)]


def failing_impl(hook, error: BaseException):
    """The implementation of ``hook`` that raised ``error``: the innermost
    frame of its traceback that runs one of the hook's implementation
    functions (a wrapper's frame lies further out when the error passed
    through it).  Methods sharing code (one class, several instances) are
    told apart by the frame's ``self``.  None when no frame can be matched
    to exactly one implementation (a decorated one, say)."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        matches = [impl for impl in hook.get_hookimpls() if _code_of(impl.function) is frame.f_code]
        if len(matches) > 1:
            this = frame.f_locals.get("self", _NOTHING)
            matches = [impl for impl in matches if getattr(impl.function, "__self__", _NOTHING) is this]
        if len(matches) == 1:
            found = matches[0]
        tb = tb.tb_next
    return found


_NOTHING = object()


def _code_of(function):
    return getattr(getattr(function, "__func__", function), "__code__", None)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> None:
    """Call a hook whose implementations must not stop each other (reporting,
    events, shutdown): through pluggy, so wrappers, ``tryfirst``/``trylast``
    and tracing apply as pluggy documents.

    When an implementation raises, the error is logged naming its plugin and
    the call goes on with the implementations that have not run yet, as a
    call of ``pm.subset_hook_caller`` without the plugins that have (so a
    wrapper sees the rest as a call of its own).  When the failing frame
    cannot be told (a decorated implementation, or a wrapper failing), the
    rest of that call is skipped and the log says so.  Results are
    discarded: these hooks are called for their effects."""
    hook = getattr(pm.hook, hook_name)
    caller = hook
    spent: list = []  # plugins whose implementation has run or failed
    while True:
        try:
            caller(**kwargs)
            return
        except Exception as error:
            impl = failing_impl(hook, error)
            if impl is None or impl.wrapper or impl.hookwrapper:
                log.error("a plugin failed in %s; the implementations after it did not run", hook_name,
                          exc_info=error)
                return
            log.error("plugin %r failed in %s", impl.plugin_name, hook_name, exc_info=error)
            order = [i for i in _call_order(caller) if i.plugin not in spent]
            for done in order:
                spent.append(done.plugin)
                if done is impl:
                    break
            caller = pm.subset_hook_caller(hook_name, remove_plugins=spent)


def chain_each(pm: pluggy.PluginManager, hook_name: str, key: str, value: Any, **kwargs) -> Any:
    """Call a hook whose implementations each transform a value (e.g.
    ``cargohold_wrap_wsgi``): each implementation, in call order, gets the
    previous one's non-None result as ``key``.  Each call goes through
    pluggy as a subset call holding just that implementation's plugin, so
    wrappers and tracing see every step; a failure fails start-up."""
    impls = _call_order(getattr(pm.hook, hook_name))
    for impl in impls:
        others = [i.plugin for i in impls if i is not impl]
        alone = pm.subset_hook_caller(hook_name, remove_plugins=others)
        for result in _startup_call(alone, hook_name, {key: value, **kwargs}):
            value = result
    return value


def call_startup(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> list:
    """Call a start-up hook through pluggy; an implementation that raises
    fails start-up with a :class:`StartupError` naming its plugin."""
    return _startup_call(getattr(pm.hook, hook_name), hook_name, kwargs)


def _startup_call(hook, hook_name: str, kwargs: dict) -> list:
    try:
        return hook(**kwargs)
    except (StartupError, ConfigError):  # already name what is wrong
        raise
    except Exception as e:
        impl = failing_impl(hook, e)
        name = impl.plugin_name if impl is not None else "?"
        raise StartupError(f"plugin {name!r} failed in {hook_name}: {e}") from e


def describe_plugins(pm: pluggy.PluginManager) -> list[dict]:
    """Every registered plugin with its distribution, version and hooks."""
    from cargohold import __version__

    dists = getattr(pm, "cargohold_distributions", {})
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: np[0] or ""):
        if plugin is None:
            continue
        dist, version = dists.get(name) or (("cargohold", __version__) if name in DEFAULT_PLUGINS else (None, None))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({"name": name, "dist": dist, "version": version, "hooks": hooks})
    return out
