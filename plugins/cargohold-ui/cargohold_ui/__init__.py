"""A web catalog for cargohold: repositories, tags, manifests, indexes and
referrers in the browser, served by the registry itself.

Configure with::

    ui:
      enabled: true     # default false: the plugin adds no route
      path: /ui/        # where the pages are served (below http.prefix)
      delete: false     # offer deletes (also needs storage.delete.enabled
                        # and the caller's delete right)

Pages are rendered on the server (Flask's Jinja) with one small script for
filter-as-you-type and copy buttons, all served from ``<path>static/``;
``Content-Security-Policy: default-src 'self'`` forbids anything else.
Who sees what is decided by the registry's auth provider and access rules,
as on the API (see :mod:`cargohold_ui.views`).
"""

from __future__ import annotations


from flask import current_app

from cargohold import hookimpl
from cargohold.errors import RegistryError

from cargohold_ui.catalog import Catalog

__all__ = ["settings", "DEFAULTS"]

DEFAULTS = {"enabled": False, "path": "/ui/", "delete": False}


def settings(config: dict) -> dict:
    """The ``ui`` section with its defaults; ``path`` normalised to
    ``/name`` (no trailing slash).  ``ValueError`` names a bad key."""
    section = dict(DEFAULTS)
    section.update(config.get("ui") or {})
    path = str(section["path"] or "").strip()
    if not path.startswith("/") or path.strip("/") == "" or path.strip("/").startswith("v2"):
        raise ValueError(f"ui.path: must be a path below '/' other than /v2/, got {section['path']!r}")
    section["path"] = "/" + path.strip("/")
    return section


@hookimpl
def cargohold_config_schema():
    return {"ui": {"enabled": bool, "path": str, "delete": bool}}


@hookimpl
def cargohold_blueprints(app):
    state = app.extensions["cargohold"]
    section = settings(state.config)
    if not section["enabled"]:
        return None
    from cargohold_ui.views import make_blueprint

    catalog = Catalog(state.registry)
    app.extensions["cargohold-ui"] = {"settings": section, "prefix": section["path"], "catalog": catalog}
    # Registered only when enabled: with no listener the core builds no
    # event on a pull or push at all.
    state.pm.register(_PushListener(catalog), name="ui-search-listing")
    return [make_blueprint(section["path"])]


class _PushListener:
    """New repositories show up in searches at once (see
    :meth:`Catalog.noticed`)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    @hookimpl
    def cargohold_registry_event(self, event):
        if event.action in ("push", "mount"):
            self.catalog.noticed(event.repository)


@hookimpl
def cargohold_startup(app):
    """Read the repository listing searches use in the background, in each
    worker, so that the first search does not wait for it."""
    ui = app.extensions.get("cargohold-ui")
    if ui is not None:
        ui["catalog"].warm()


@hookimpl
def cargohold_error_response(error: RegistryError, request):
    """Errors on the catalog's pages are HTML pages; the API's stay JSON."""
    ui = current_app.extensions.get("cargohold-ui")
    if ui is None:
        return None
    path = request.path
    if not (path == ui["prefix"] or path.startswith(ui["prefix"] + "/")) or path.startswith(ui["prefix"] + "/static/"):
        return None
    from cargohold_ui.views import render_error

    return render_error(error)
