"""Bugsnag-style error reporting for cargohold, built on sentry-sdk.

Configured by ``reporting.bugsnag``::

    reporting:
      bugsnag:
        dsn: https://<key>@errors.example.com/<project>
        environment: production
        release: cargohold@1.4.2
        samplerate: 1.0

Every unhandled error of a request (the ones answered 500 ``UNKNOWN`` or 503
``UNAVAILABLE``) is sent with the request's method, route, path, request id
and authenticated user, never its credentials (see
:mod:`cargohold_report_bugsnag.reporter`).  Without a ``reporting.bugsnag``
section, or with an empty ``dsn``, the plugin does nothing.
"""

from __future__ import annotations

from cargohold import hookimpl

from cargohold_report_bugsnag.settings import DsnType, SampleRate

#: Where each app keeps its reporter.
EXTENSION = "cargohold_report_bugsnag"


@hookimpl
def cargohold_config_schema():
    return {"reporting.bugsnag": {"dsn": DsnType, "environment": str, "release": str, "samplerate": SampleRate}}


@hookimpl
def cargohold_startup(app):
    settings = (app.config["CARGOHOLD"].get("reporting") or {}).get("bugsnag")
    if settings and settings.get("dsn"):
        from cargohold_report_bugsnag.reporter import ErrorReporter  # the SDK, only when configured

        app.extensions[EXTENSION] = ErrorReporter.from_settings(settings)


@hookimpl
def cargohold_report_exception(error, request_info):
    from flask import current_app

    reporter = current_app.extensions.get(EXTENSION)
    if reporter is not None:
        reporter.report(error, request_info)


@hookimpl
def cargohold_shutdown(app):
    reporter = app.extensions.pop(EXTENSION, None)
    if reporter is not None:
        reporter.close()
