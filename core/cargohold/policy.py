"""Calling the policy hooks (``cargohold_before_*``, see
:mod:`cargohold.hookspecs`).

A policy decides whether a change may happen, so its errors are not
isolated as reporting's are: a :class:`RegistryError` it raises (``Denied``)
is the request's answer.  Anything else it raises is a broken policy: logged
with the plugin's name, passed to ``cargohold_report_exception``, and the
request fails closed with 503 ``UNAVAILABLE``.

Every call goes through ``pm.hook.<name>``; when no plugin implements the
hook (``get_hookimpls()`` is empty) it is not called at all, and
:func:`active` lets a caller skip working out arguments nobody would read.
"""

from __future__ import annotations

import logging

import pluggy
from flask import has_request_context

from cargohold.errors import RegistryError, Unavailable
from cargohold.plugins import call_each, failing_impl
from cargohold.request_context import request_info

log = logging.getLogger("cargohold.policy")


def active(pm: pluggy.PluginManager, hook_name: str) -> bool:
    """Whether any plugin implements the policy hook ``hook_name``."""
    return bool(getattr(pm.hook, hook_name).get_hookimpls())


def check(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> None:
    """Call the policy hook ``hook_name`` with ``kwargs`` if any plugin
    implements it.  A :class:`RegistryError` passes through to the client;
    any other exception becomes :class:`Unavailable` after being logged and
    reported (see the module docstring)."""
    hook = getattr(pm.hook, hook_name)
    if not hook.get_hookimpls():
        return
    try:
        hook(**kwargs)
    except RegistryError:
        raise
    except Exception as error:
        impl = failing_impl(hook, error)
        plugin = impl.plugin_name if impl is not None else "?"
        log.error("policy plugin %r failed in %s; the request is refused", plugin, hook_name, exc_info=error)
        call_each(pm, "cargohold_report_exception", error=error,
                  request_info=request_info() if has_request_context() else {})
        raise Unavailable("a policy check failed; try again later",
                          detail={"plugin": plugin, "hook": hook_name}) from None
