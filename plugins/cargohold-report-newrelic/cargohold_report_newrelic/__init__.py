"""New Relic APM for cargohold.

Configured by ``reporting.newrelic``::

    reporting:
      newrelic:
        licensekey: 0123456789abcdef0123456789abcdef01234567
        name: cargohold-production
        verbose: false        # the agent's debug log on stderr
        developermode: false  # true: no network; data stays in the process

The agent is set up from these settings alone (no ``newrelic.ini``); every
request is a web transaction named after its API route, the Flask endpoint
(``WebTransaction/Function/v2.get_blob``, ``.../v2.put_manifest``,
``.../unmatched`` for paths no route serves), and unhandled errors are
recorded on their transaction (see :mod:`cargohold_report_newrelic.agent`).
Without a ``reporting.newrelic`` section the plugin does nothing.
"""

from __future__ import annotations

from cargohold import hookimpl
from cargohold.config import Secret

#: Where each app keeps its agent handle.
EXTENSION = "cargohold_report_newrelic"


@hookimpl
def cargohold_config_schema():
    return {"reporting.newrelic": {"licensekey": Secret, "name": str, "verbose": bool, "developermode": bool}}


@hookimpl
def cargohold_wrap_wsgi(wsgi_app, app):
    settings = (app.config["CARGOHOLD"].get("reporting") or {}).get("newrelic")
    if settings is None:
        return None
    from cargohold_report_newrelic.agent import NewRelicAgent  # the agent, only when configured

    agent = NewRelicAgent.start(settings)
    app.extensions[EXTENSION] = agent
    app.before_request(agent.name_transaction)
    return agent.wrap(wsgi_app)


@hookimpl
def cargohold_report_exception(error, request_info):
    from flask import current_app

    agent = current_app.extensions.get(EXTENSION)
    if agent is not None:
        agent.notice_error(error, request_info)


@hookimpl
def cargohold_shutdown(app):
    agent = app.extensions.pop(EXTENSION, None)
    if agent is not None:
        agent.shutdown()
