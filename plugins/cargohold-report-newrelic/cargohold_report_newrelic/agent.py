"""Driving the New Relic agent: set-up from cargohold's settings, the WSGI
wrapper, transaction names and errors.

The agent is one per process (its settings are global), so the first app of
a process that starts it decides the license key and mode; each worker
process starts its own after the fork, as the agent requires.  Its own
instrumentation (storage clients' HTTP calls, for example) comes with it.

What is sent about a request is what the agent collects by default (method,
path without the query string, a few headers such as ``Host`` and
``User-Agent``; never ``Authorization`` or cookies, and request parameters
are off), plus the request id as the attribute ``request_id``.

Errors: an unhandled error (answered 500 or 503) is recorded on its
transaction.  The registry's own client errors (``RegistryError`` classes
with a 4xx status: unknown manifests, bad names, denied pushes) are part of
the protocol, not failures, and are ignored.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import newrelic.agent
from flask import request

from cargohold.config import ConfigError
from cargohold.errors import RegistryError
from cargohold.request_context import request_id

log = logging.getLogger("cargohold.report.newrelic")

#: Our transaction names win over the agent's Flask instrumentation.
NAME_PRIORITY = 10
#: Seconds ``register_application`` may wait for the collector at start-up.
STARTUP_TIMEOUT = 10.0
#: Seconds the last harvest may take at shutdown.
SHUTDOWN_TIMEOUT = 10.0


class NewRelicAgent:
    """A handle on the process's agent and the registered application."""

    def __init__(self, application):
        self.application = application

    @classmethod
    def start(cls, settings: Mapping[str, Any]) -> "NewRelicAgent":
        """Initialise the agent from ``settings`` (the ``reporting.newrelic``
        section) and register the application.  Raises :class:`ConfigError`
        when neither a license key nor developer mode is given."""
        developer_mode = bool(settings.get("developermode"))
        license_key = settings.get("licensekey") or ""
        if not license_key and not developer_mode:
            raise ConfigError("reporting.newrelic.licensekey: required (or set developermode: true)")
        name = settings.get("name") or "cargohold"
        agent_settings = newrelic.agent.global_settings()
        agent_settings.license_key = license_key or None
        agent_settings.app_name = name
        agent_settings.developer_mode = developer_mode
        if developer_mode:
            # Developer mode sends nothing; without this the agent still
            # probes cloud metadata hosts while building its connect payload.
            for vendor in ("aws", "azure", "azureappservice", "azurefunction", "gcp", "pcf"):
                setattr(agent_settings.utilization, f"detect_{vendor}", False)
        ignored = set(agent_settings.error_collector.ignore_classes) | set(client_error_classes())
        agent_settings.error_collector.ignore_classes = sorted(ignored)
        if settings.get("verbose"):
            agent_settings.log_file = "stderr"
            agent_settings.log_level = logging.DEBUG
        newrelic.agent.initialize()
        application = newrelic.agent.register_application(name=name, timeout=STARTUP_TIMEOUT)
        log.info("New Relic agent reporting as %r%s", name, " (developer mode: nothing sent)" if developer_mode else "")
        return cls(application)

    def wrap(self, wsgi_app: Callable) -> Callable:
        """``wsgi_app`` with every request recorded as a web transaction."""
        return newrelic.agent.WSGIApplicationWrapper(wsgi_app, application=self.application)

    @staticmethod
    def name_transaction() -> None:
        """``before_request``: name the transaction after the route and tag
        it with the request id."""
        newrelic.agent.set_transaction_name(request.endpoint or "unmatched", priority=NAME_PRIORITY)
        newrelic.agent.add_custom_attribute("request_id", request_id())

    @staticmethod
    def notice_error(error: BaseException, request_info: Mapping[str, Any]) -> None:
        """Record ``error`` on the current transaction (the agent keeps one
        record per exception, if its own Flask instrumentation saw it first)."""
        newrelic.agent.notice_error(error=(type(error), error, error.__traceback__))

    def shutdown(self) -> None:
        """Send what is left (a last harvest) and stop the agent's threads."""
        newrelic.agent.shutdown_agent(timeout=SHUTDOWN_TIMEOUT)


def client_error_classes() -> list[str]:
    """``module:Class`` of every loaded :class:`RegistryError` class answered
    with a 4xx status, as the agent's ``error_collector.ignore_classes``
    wants them."""
    found, todo = [], [RegistryError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if 400 <= getattr(cls, "status", 500) < 500:
            found.append(f"{cls.__module__}:{cls.__qualname__}")
    return found
