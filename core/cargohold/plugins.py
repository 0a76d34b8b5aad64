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


def build_plugin_manager(disabled: Iterable[str] = ()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.cargohold_distributions = {}  # entry-point name -> (distribution, version)
    for name in disabled:
        pm.set_blocked(name)
    _load_entrypoints(pm)
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
    """Merge the ``{name: factory}`` dicts returned by a registration hook.
    A name offered twice fails start-up naming both plugins."""
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        result = impl.function() or {}
        for name, factory in result.items():
            if name in merged:
                raise StartupError(
                    f"{hook_name}: {name!r} is offered by both {owners[name]!r} and {impl.plugin_name!r}"
                )
            merged[name] = factory
            owners[name] = impl.plugin_name
    return merged


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> list:
    """Call every implementation of a hook on its own: one that raises is
    logged and the others still run.  Returns the non-None results."""
    results = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):  # LIFO, as pluggy calls
        try:
            res = impl.function(*[kwargs[k] for k in impl.argnames])
        except Exception:
            log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)
            continue
        if res is not None:
            results.append(res)
    return results


def call_each_with(impls: list, hook_name: str, arg: Any) -> None:
    """:func:`call_each` for a hook of one argument whose implementations
    the caller already has (``pm.hook.<name>.get_hookimpls()``) and whose
    results it ignores: the cheapest call, for hooks on a hot path."""
    for impl in reversed(impls):
        try:
            if impl.argnames:
                impl.function(arg)
            else:  # pluggy lets an implementation take fewer arguments
                impl.function()
        except Exception:
            log.exception("plugin %r failed in %s", impl.plugin_name, hook_name)


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
