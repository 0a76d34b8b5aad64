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
section, or with an empty ``apikey``, the plugin does nothing.  The hooks
are the core's :class:`cargohold.reporting.ErrorReporterPlugin`.

Earlier versions of this plugin spoke the Sentry protocol under the same
section; their ``dsn``, ``environment``, ``release`` and ``samplerate`` keys
stop start-up with a message pointing to ``reporting.sentry`` (the
``cargohold-report-sentry`` plugin).
"""

from __future__ import annotations

from cargohold.config import HttpUrl
from cargohold.reporting import ErrorReporterPlugin

from cargohold_report_bugsnag.settings import ApiKey, Moved

_SENTRY = "the Sentry reporter, cargohold-report-sentry"


def start(settings):
    from cargohold_report_bugsnag.reporter import BugsnagReporter  # the package, only when configured

    return BugsnagReporter.from_settings(settings)


#: The plugin (the entry point's object).
plugin = ErrorReporterPlugin("bugsnag", {
    "apikey": ApiKey,
    "releasestage": str,
    "endpoint": HttpUrl("an http(s) URL such as https://notify.bugsnag.example.com"),
    **{key: Moved(f"reporting.sentry.{key}", _SENTRY) for key in ("dsn", "environment", "release", "samplerate")},
}, required="apikey", start=start)
