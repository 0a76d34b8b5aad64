"""The hook implementations every error-reporting plugin needs, in one place.

An error reporter sends a request's unhandled errors (answered 500
``UNKNOWN`` or 503 ``UNAVAILABLE``) to an error service.  Its plugin makes
one :class:`ErrorReporterPlugin` and points its entry point at it::

    def start(settings):
        from cargohold_report_example.reporter import ExampleReporter  # the SDK, only when configured
        return ExampleReporter.from_settings(settings)

    plugin = ErrorReporterPlugin("example", {"apikey": str, "endpoint": HttpUrl()}, required="apikey",
                                 start=start)

    # setup.cfg
    [options.entry_points]
    cargohold =
        report-example = cargohold_report_example:plugin

It declares ``reporting.<section>``; at start-up, when the section sets its
``required`` key, it calls ``start(settings)`` and keeps the reporter in the
app's extensions (one per app); it hands the reporter every unhandled error
with the request's ``request_info`` (already without credential headers; see
:func:`cargohold.request_context.request_info`), and closes it at shutdown.
A reporter that raises is logged by the core and fails no request.

The reporter's own contract (what it sends, scrubbing with
:mod:`cargohold.scrub`, background delivery, bounded shutdown) is checked by
:class:`cargohold.testing.reporting.ReporterSuite`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from flask import current_app

from cargohold import hookimpl

__all__ = ["ErrorReporter", "ErrorReporterPlugin"]


class ErrorReporter(Protocol):
    """What :class:`ErrorReporterPlugin` drives."""

    def report(self, error: BaseException, request_info: Mapping[str, Any]) -> None:
        """Queue ``error`` for sending; never block on the service."""

    def close(self) -> None:
        """Send what is queued, for a bounded time, and stop."""


class ErrorReporterPlugin:
    """The hook implementations of an error-reporting plugin whose settings
    are ``reporting.<section>`` (checked against ``schema``), active when
    the key ``required`` is set, its reporter made by ``start(settings)``."""

    def __init__(self, section: str, schema: Mapping[str, Any], required: str,
                 start: Callable[[Mapping[str, Any]], ErrorReporter]):
        self.section = section
        self.schema = dict(schema)
        self.required = required
        self.start = start
        #: The app's extensions key of the reporter.
        self.extension = f"cargohold.reporting.{section}"

    def reporter(self, app) -> ErrorReporter | None:
        """``app``'s reporter, ``None`` when not configured (or shut down)."""
        return app.extensions.get(self.extension)

    @hookimpl
    def cargohold_config_schema(self):
        return {f"reporting.{self.section}": self.schema}

    @hookimpl
    def cargohold_startup(self, app):
        settings = (app.config["CARGOHOLD"].get("reporting") or {}).get(self.section)
        if settings and settings.get(self.required):
            app.extensions[self.extension] = self.start(settings)

    @hookimpl
    def cargohold_report_exception(self, error, request_info):
        reporter = current_app.extensions.get(self.extension)
        if reporter is not None:
            reporter.report(error, request_info)

    @hookimpl
    def cargohold_shutdown(self, app):
        reporter = app.extensions.pop(self.extension, None)
        if reporter is not None:
            reporter.close()

    def __repr__(self) -> str:
        return f"<ErrorReporterPlugin reporting.{self.section}>"
