"""cargohold-tag-policy: refuse manifest pushes to tags that match a pattern.

Configuration (``tagpolicy.deny``, a list of regular expressions searched in
the tag)::

    tagpolicy:
      deny: ["^latest$", "^tmp-"]

A push of a manifest to a denied tag fails with ``403 DENIED``.  Pushes by
digest are not tags and always pass.

This module is the whole plugin; it is found through its ``cargohold`` entry
point and uses three hooks: one to describe its configuration, one to read it
at start-up, and the policy hook.
"""

from __future__ import annotations

import re

from flask import current_app

from cargohold import hookimpl
from cargohold.errors import Denied

EXTENSION = "cargohold_tag_policy"


@hookimpl
def cargohold_config_schema():
    return {"tagpolicy": {"deny": list}}


@hookimpl
def cargohold_startup(app):
    """Compile the deny patterns once, into this app's extension state."""
    section = app.config["CARGOHOLD"].get("tagpolicy") or {}
    patterns = []
    for pattern in section.get("deny") or []:
        try:
            patterns.append(re.compile(pattern))
        except (re.error, TypeError) as e:
            raise ValueError(f"tagpolicy.deny: invalid pattern {pattern!r}: {e}") from e
    app.extensions[EXTENSION] = patterns


@hookimpl
def cargohold_before_manifest_put(reference):
    if ":" in reference:  # a digest (algorithm:hex); tags never contain ':'
        return
    for pattern in current_app.extensions.get(EXTENSION, ()):
        if pattern.search(reference):
            raise Denied(f"tag {reference!r} is not allowed by the tag policy",
                         detail={"tag": reference, "pattern": pattern.pattern})
