"""The ``webhook`` notification sink: POSTs batches of registry events to
an HTTP(S) endpoint in the reference registry's envelope.

Queueing, ordering, retries and dead letters are the core's
(:mod:`cargohold.events.dispatch`); this plugin makes one attempt per call.
"""

from __future__ import annotations

from cargohold import hookimpl
from cargohold_notify_webhook.sink import SIGNATURE_HEADER, WebhookSink

__all__ = ["SIGNATURE_HEADER", "WebhookSink"]


@hookimpl
def cargohold_notification_sinks():
    return {"webhook": WebhookSink.from_config}
