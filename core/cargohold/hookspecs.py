"""Every hook cargohold calls, with its contract.

Plugins implement hooks with ``@cargohold.hookimpl`` and are found through the
``cargohold`` entry-point group (or registered by the core, for the built-in
defaults, through the same plugin manager).  Implementations may accept fewer
arguments than a spec lists; new arguments are only ever added.

Hooks are grouped by phase:

* registration (called once while the app is built): ``cargohold_config_schema``,
  ``cargohold_storage_drivers``, ``cargohold_auth_providers``,
  ``cargohold_notification_sinks``, ``cargohold_blueprints``;
* lifecycle: ``cargohold_startup``, ``cargohold_shutdown``;
* command line: ``cargohold_cli_commands``;
* policy (inside requests, errors not isolated): ``cargohold_before_blob_upload``,
  ``cargohold_before_blob_commit``, ``cargohold_before_blob_mount``,
  ``cargohold_before_manifest_put``, ``cargohold_before_tag_put``,
  ``cargohold_before_delete``;
* events: ``cargohold_registry_event``;
* reporting: ``cargohold_wrap_wsgi``, ``cargohold_report_exception``,
  ``cargohold_request_finished``, ``cargohold_error_response``.

Every call goes through pluggy (``pm.hook.<name>`` or a
``pm.subset_hook_caller`` of it), so ``wrapper=True`` / ``hookwrapper``
implementations, ``tryfirst``/``trylast`` and ``CARGOHOLD_TRACE=1`` tracing
work as pluggy documents for every hook.  Where a spec says errors are
isolated (shutdown, events, reporting), an implementation that raises is
logged with its plugin's name and the call continues with the
implementations that have not run yet, as a new (subset) call: a wrapper
sees the failed part and the rest as two calls.  ``cargohold_wrap_wsgi``
is called once per implementation, each getting the previous result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from cargohold import hookspec

if TYPE_CHECKING:
    import argparse

    from flask import Blueprint, Flask, Request, Response

    from cargohold.auth import AuthProvider
    from cargohold.errors import RegistryError
    from cargohold.events import Event
    from cargohold.manifests import Manifest
    from cargohold.storage.driver import StorageDriver


# -- registration -------------------------------------------------------------


@hookspec
def cargohold_config_schema() -> dict[str, Any]:
    """Contribute configuration keys.

    Return ``{dotted_section: schema}``, e.g. ``{"storage.filesystem":
    {"rootdirectory": str, "maxthreads": int}}``.  A schema maps each key to a
    type (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict`` for free
    form), to one of :mod:`cargohold.config`'s value types (``Size``,
    ``Duration``) or to a nested schema dict.  The section is validated at
    start-up with these types (environment overrides are coerced to them) and
    any key not described is an error naming the key.  A plugin that does not
    describe its section gets it passed through unvalidated.
    """


@hookspec
def cargohold_storage_drivers() -> dict[str, Callable[[dict], "StorageDriver"]]:
    """Offer storage drivers by name.

    Return ``{name: factory}``; ``factory(params)`` receives the ``storage.<name>``
    config section (a dict, already validated against the plugin's schema) and
    returns a :class:`cargohold.storage.driver.StorageDriver`.  The config's
    ``storage`` section picks exactly one name.  Two plugins offering the same
    name fail start-up.  The factory may raise ``ValueError`` with a message
    naming a bad key; start-up then fails with it.
    """


@hookspec
def cargohold_auth_providers() -> dict[str, Callable[[dict], "AuthProvider"]]:
    """Offer auth providers by name.

    Return ``{name: factory}``; ``factory(params)`` receives the ``auth.<name>``
    section and returns a :class:`cargohold.auth.AuthProvider`.  With no
    ``auth`` section the registry is open (anonymous pull and push), as the
    reference registry is.  Duplicate names fail start-up.
    """


@hookspec
def cargohold_notification_sinks() -> dict[str, Callable[[dict], Any]]:
    """Offer notification sinks by name.

    Return ``{name: factory}``; an endpoint's ``type`` picks one (default
    ``webhook``).  ``factory(params)`` receives the endpoint's own keys: its
    ``name`` and every key the core does not read (the core reads those in
    :data:`cargohold.events.endpoints.ENDPOINT_SCHEMA`: filters, backoff,
    dead letters).  It raises ``ValueError`` (or ``ConfigError``) naming a
    bad or unknown key, and returns an object whose ``send(batch)`` makes one
    delivery attempt of a list of :class:`cargohold.events.Event` and raises
    on failure.  Retries, queueing and backoff belong to the core, not the
    sink.  Duplicate names fail start-up.  A factory (or, for a classmethod,
    its class) may carry a ``schema`` attribute, the schema of the endpoint
    keys it reads: the configuration reference lists them.
    """


@hookspec
def cargohold_blueprints(app: "Flask") -> list["Blueprint"] | None:
    """Return Flask blueprints to register on ``app`` (extra routes, e.g. a
    token endpoint).  Routes under ``/v2/`` belong to the core."""


# -- lifecycle ---------------------------------------------------------------


@hookspec
def cargohold_startup(app: "Flask") -> None:
    """Called once the app is fully built, before it serves requests (in each
    worker process).  Raising fails start-up with the plugin's name."""


@hookspec
def cargohold_shutdown(app: "Flask") -> None:
    """Called when the server stops, after in-flight requests drained.
    Exceptions are logged and do not stop the other implementations."""


# -- command line ------------------------------------------------------------


@hookspec
def cargohold_cli_commands(subparsers: Any, parents: "list[argparse.ArgumentParser]") -> None:
    """Add subcommands to the ``cargohold`` command line.

    ``subparsers`` is what the ``cargohold`` parser's
    ``ArgumentParser.add_subparsers()`` returned: add a
    command with ``subparsers.add_parser(name, parents=parents, help=...)``
    (``parents`` holds the options every command shares: ``-c/--config``,
    defaulting to ``$CARGOHOLD_CONFIG``) and give it
    ``set_defaults(run=function)``.  ``function(args)`` receives the parsed
    ``argparse.Namespace`` and returns the exit code.  It reads the
    configuration with :func:`cargohold.cli.load_config` and works on the
    registry through :func:`cargohold.cli.maintenance_app`; a
    :class:`cargohold.config.ConfigError` it raises exits with status 2 and
    its message, as for the core's commands.

    Called only when the command line names no core command (``serve``,
    ``gc``, ...): the core's commands never load plugins to build their
    parser, so ``serve`` still patches with gevent before any plugin is
    imported.  Plugins disabled by ``plugins.disabled`` in the configuration
    file given (or ``$CARGOHOLD_CONFIG``) add no commands.  A name the core
    or another plugin already uses fails with the plugin's name (exit 3).
    """


# -- policy ------------------------------------------------------------------
#
# Policy hooks run inside a write request, before the change is made, and are
# called through :func:`cargohold.policy.check`: one pluggy call, skipped when
# no plugin implements the hook.  Unlike events and reporting, their errors
# are NOT isolated: the first implementation that raises ends the call and
# the request.  Raise a :class:`cargohold.errors.RegistryError` (``Denied``
# for a refusal: 403 DENIED, with a message naming the rule) and the client
# receives exactly that error; nothing of the refused change is visible
# afterwards.  Any other exception is a broken policy: it is logged with the
# plugin's name, passed to ``cargohold_report_exception``, and the request
# fails closed with 503 UNAVAILABLE (never a traceback, never a 500), so a
# policy that cannot decide never lets a change through.  Implementations
# run on the request path: keep them cheap, and read storage only for what
# the decision needs.  The changes a policy allowed are observed, once
# committed, through ``cargohold_registry_event``.


@hookspec
def cargohold_before_blob_upload(repository: str, size: int | None, digest: str | None) -> None:
    """Called before a request stores blob bytes in ``repository``: a
    ``POST`` that starts an upload (session or monolithic), a ``PATCH``
    chunk, and a ``PUT`` that carries the whole blob, before any byte of its
    body is read.  ``size`` is the blob's total size once this request's
    bytes are in (the bytes already received plus ``Content-Length``), or
    ``None`` when unknown (a session start, a chunked body).  ``digest`` is
    the digest the client declared (monolithic ``POST ?digest=``, whole-blob
    ``PUT``), else ``None``.  Refusing stores nothing and, for a ``PATCH``
    or ``PUT``, leaves the session as it was (purged by age if abandoned).
    A mount is not an upload: see ``cargohold_before_blob_mount``.
    """


@hookspec
def cargohold_before_blob_commit(repository: str, digest: str, size: int) -> None:
    """Called once an uploaded blob's bytes are verified against ``digest``
    (``size`` bytes, final), before they enter the blob store and before the
    blob is linked into ``repository``.  Called whether or not the blob is
    already stored or linked (a re-push).  Refusing leaves nothing visible:
    the bytes are dropped, the upload session ended, the blob not linked.
    """


@hookspec
def cargohold_before_blob_mount(repository: str, from_repository: str, digest: str, size: int) -> None:
    """Called before the blob ``digest`` (``size`` bytes) of
    ``from_repository`` is linked into ``repository`` by a cross-repository
    mount (``POST ?mount=&from=``), once it is known to be mountable (an
    unmountable blob falls back to an upload session, which
    ``cargohold_before_blob_upload`` sees).  Refusing fails the request
    with that error; nothing is linked and no session is started.
    """


@hookspec
def cargohold_before_manifest_put(repository: str, reference: str, manifest: "Manifest") -> None:
    """Called after a pushed manifest is parsed and validated, before it is
    stored, once per tag it is pushed with (else once, with its digest).
    ``reference`` is that tag or the digest; ``manifest`` is a
    :class:`cargohold.manifests.Manifest` (media type, digest, raw bytes,
    parsed JSON).  Refusing stores nothing of the manifest.
    """


@hookspec
def cargohold_before_tag_put(repository: str, tag: str, old_digest: str | None, new_digest: str) -> None:
    """Called before ``tag`` in ``repository`` is pointed at the manifest
    ``new_digest`` (a manifest ``PUT`` by tag, or by digest with
    ``?tag=``), after ``cargohold_before_manifest_put``.  ``old_digest`` is
    the manifest the tag points at now, ``None`` for a new tag; equal to
    ``new_digest`` when the same manifest is pushed again.  Refusing stores
    nothing of the manifest and moves no tag of the request.
    """


@hookspec
def cargohold_before_delete(repository: str, kind: str, reference: str, digest: str | None,
                            tags: list[str]) -> None:
    """Called before a delete in ``repository`` is carried out (deletes
    enabled, the target exists).  ``kind`` is ``"manifest"`` (``reference``
    and ``digest`` are its digest; ``tags`` every tag pointing at it, which
    the delete removes too), ``"tag"`` (``reference`` is the tag, ``digest``
    the manifest it points at, ``tags`` is ``[reference]``) or ``"blob"``
    (``reference`` and ``digest`` the blob's digest; ``tags`` empty).
    Refusing deletes nothing.  The garbage collector does not call it: it
    removes only what no tag or manifest reaches.
    """


# -- events ------------------------------------------------------------------


@hookspec
def cargohold_registry_event(event: "Event") -> None:
    """Called after a blob or manifest was pushed, pulled, mounted or deleted,
    once the change is committed.  ``event`` is a
    :class:`cargohold.events.Event`: flat fields (``action``,
    ``repository``, ``digest``, ...), the reference's records as
    ``event.target`` etc., the JSON object as ``event.to_dict()``.  Runs on
    the request path of every pull: must return quickly (enqueue, don't
    deliver).  Exceptions are logged and never fail the request."""


# -- reporting ---------------------------------------------------------------


@hookspec
def cargohold_wrap_wsgi(wsgi_app: Callable, app: "Flask") -> Callable | None:
    """Return a WSGI callable wrapping ``wsgi_app`` (e.g. an APM agent's
    wrapper), or ``None`` to leave it.  Wrappers are applied in hook call
    order, each around the previous result: the hook is called once per
    implementation (a subset call), with the previous result as
    ``wsgi_app``.  Raising fails start-up with the plugin's name.  ``app`` is the Flask app being
    built (its configuration is ``app.config["CARGOHOLD"]``); the matched
    route is the Flask endpoint, ``flask.request.endpoint``."""


@hookspec
def cargohold_report_exception(error: BaseException, request_info: dict) -> None:
    """An unhandled exception happened while serving a request.  ``request_info``
    holds method, path (without the query string), route, endpoint, remote
    address, request id, the authenticated user (or ``None``) and headers with
    credentials (``Authorization``, cookies) removed.  Each implementation is
    called on its own: one that raises is logged and the others still run."""


@hookspec
def cargohold_request_finished(request_info: dict, status: int, duration: float) -> None:
    """A request finished with ``status`` after ``duration`` seconds: called
    once its response body was sent (the server closed it), in an app
    context.  ``request_info`` as for ``cargohold_report_exception`` plus
    ``route``, ``bytes_in`` (request body bytes the registry read) and
    ``bytes_out`` (response body bytes sent), the same counts as the
    ``cargohold_http_request_bytes_total``/``..._response_bytes_total``
    metrics.  Called per implementation, errors isolated.  Must be cheap."""


@hookspec(firstresult=True)
def cargohold_error_response(error: "RegistryError", request: "Request") -> "Response | None":
    """Render ``error`` as the HTTP response.  The first non-``None`` result
    wins; the built-in ``trylast`` implementation renders the spec's JSON
    error document with the error's status and headers."""
