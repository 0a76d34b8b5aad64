"""cargohold: a container image registry (OCI Distribution v1.1, Docker Registry V2).

Plugins import only :data:`hookimpl` from here::

    from cargohold import hookimpl

    @hookimpl
    def cargohold_before_manifest_put(repository, reference, manifest):
        ...

See :mod:`cargohold.hookspecs` for every hook and its contract.
"""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "cargohold"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

__all__ = ["hookimpl", "__version__"]
