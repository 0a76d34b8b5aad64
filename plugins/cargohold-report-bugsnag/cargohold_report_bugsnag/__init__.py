"""Bugsnag error reporting for cargohold, on the official ``bugsnag`` package.

Configured by ``reporting.bugsnag``, with the reference registry's keys::

    reporting:
      bugsnag:
        apikey: 0123456789abcdef0123456789abcdef
        releasestage: production
        endpoint: https://notify.bugsnag.example.com   # default: Bugsnag's own

Every unhandled error of a request (the ones answered 500 ``UNKNOWN`` or 503
``UNAVAILABLE``) is sent with its stack trace, the request's route, method,
path, request id and authenticated user, never its credentials (see
:mod:`cargohold_report_bugsnag.reporter`).  Without a ``reporting.bugsnag``
section, or with an empty ``apikey``, the plugin does nothing.

Earlier versions of this plugin spoke the Sentry protocol under the same
section; their ``dsn``, ``environment``, ``release`` and ``samplerate`` keys
stop start-up with a message pointing to ``reporting.sentry`` (the
``cargohold-report-sentry`` plugin).
"""

from __future__ import annotations

from cargohold import hookimpl

from cargohold_report_bugsnag.settings import ApiKey, Moved, NotifyEndpoint

#: Where each app keeps its reporter.
EXTENSION = "cargohold_report_bugsnag"

_SENTRY = "the Sentry reporter, cargohold-report-sentry"


@hookimpl
def cargohold_config_schema():
    return {"reporting.bugsnag": {
        "apikey": ApiKey, "releasestage": str, "endpoint": NotifyEndpoint,
        **{key: Moved(f"reporting.sentry.{key}", _SENTRY) for key in ("dsn", "environment", "release", "samplerate")},
    }}


@hookimpl
def cargohold_startup(app):
    settings = (app.config["CARGOHOLD"].get("reporting") or {}).get("bugsnag")
    if settings and settings.get("apikey"):
        from cargohold_report_bugsnag.reporter import BugsnagReporter  # the package, only when configured

        app.extensions[EXTENSION] = BugsnagReporter.from_settings(settings)


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
