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
section, or with an empty ``dsn``, the plugin does nothing.  The hooks are
the core's :class:`cargohold.reporting.ErrorReporterPlugin`.
"""

from __future__ import annotations

from cargohold.reporting import ErrorReporterPlugin

from cargohold_report_sentry.settings import DsnType, SampleRate


def start(settings):
    from cargohold_report_sentry.reporter import ErrorReporter  # the SDK, only when configured

    return ErrorReporter.from_settings(settings)


#: The plugin (the entry point's object).
plugin = ErrorReporterPlugin(
    "sentry", {"dsn": DsnType, "environment": str, "release": str, "samplerate": SampleRate},
    required="dsn", start=start)
