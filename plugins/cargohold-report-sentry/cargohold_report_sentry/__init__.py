"""Error reporting for cargohold to Sentry, or any service that speaks its
protocol (GlitchTip...), through sentry-sdk.

Configured by ``reporting.sentry``::

    reporting:
      sentry:
        dsn: https://<key>@errors.example.com/<project>
        environment: production
        release: cargohold@1.4.2
        samplerate: 1.0

Every unhandled error of a request (the ones answered 500 ``UNKNOWN`` or 503
``UNAVAILABLE``) is sent with the request's method, route, path, request id
and authenticated user, never its credentials (see
:mod:`cargohold_report_sentry.reporter`).  Without a ``reporting.sentry``
section, or with an empty ``dsn``, the plugin does nothing.
"""

from __future__ import annotations

from cargohold import hookimpl

from cargohold_report_sentry.settings import DsnType, SampleRate

#: Where each app keeps its reporter.
EXTENSION = "cargohold_report_sentry"


@hookimpl
def cargohold_config_schema():
    return {"reporting.sentry": {"dsn": DsnType, "environment": str, "release": str, "samplerate": SampleRate}}


@hookimpl
def cargohold_startup(app):
    settings = (app.config["CARGOHOLD"].get("reporting") or {}).get("sentry")
    if settings and settings.get("dsn"):
        from cargohold_report_sentry.reporter import ErrorReporter  # the SDK, only when configured

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
