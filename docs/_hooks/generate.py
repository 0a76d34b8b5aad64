"""MkDocs hook: the pages generated from the code, added at build time.

``reference/configuration.md`` comes from the configuration schemas the core
and the installed plugins declare, ``plugins/hooks.md`` from
``core/cargohold/hookspecs.py``: both through :mod:`cargohold.docgen`, the
code behind ``cargohold config-reference`` and ``cargohold hook-reference``.
Neither is committed, so neither can drift from the code.
"""

from __future__ import annotations

from mkdocs.structure.files import File

from cargohold import docgen
from cargohold.plugins import build_plugin_manager


def on_files(files, config):
    pages = {
        "reference/configuration.md": docgen.config_reference(build_plugin_manager()),
        "plugins/hooks.md": docgen.hook_reference(),
    }
    for src_uri, content in pages.items():
        files.append(File.generated(config, src_uri, content=content))
    return files
