"""The generated parts of the documentation: the configuration reference and
the hook reference, as Markdown.

Both come from what the running code declares, so they cannot drift from it:

* :func:`config_keys` walks the core's :data:`cargohold.config.CORE_SCHEMA`
  merged with every schema a loaded plugin returns from
  ``cargohold_config_schema`` (as :func:`cargohold.config.validate` merges
  them), plus the schemas of list entries the core checks itself
  (``notifications.endpoints[]``, ``proxy.upstreams[]``) and the endpoint keys
  of each notification sink whose factory carries a ``schema`` attribute.
* :func:`hook_reference` renders :mod:`cargohold.hookspecs`: each hook's
  signature, its pluggy options and its docstring.

``cargohold config-reference`` and ``cargohold hook-reference`` print them;
the documentation build (``docs/hooks/generate.py``) adds them as pages.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from typing import Any, Iterator

import pluggy

from cargohold import config as config_mod
from cargohold import hookspecs
from cargohold.config import ANY_KEY, DEFAULTS, ENV_PREFIX, PROXY_UPSTREAM_SCHEMA, is_secret

__all__ = ["ConfigKey", "config_keys", "config_reference", "hook_reference", "type_name"]

#: How a key that a schema does not list by name appears in a dotted path.
ANY_NAME = "<name>"


@dataclasses.dataclass
class ConfigKey:
    """One configuration key: its dotted ``path`` (``[]`` marks the entries
    of a list, ``<name>`` any key of a free-form section), its type as the
    reference spells it, its default (``None``: none the core sets), the
    ``CARGOHOLD_*`` variable that sets it (``None`` where the environment
    cannot), whether it is a secret, and which plugin declares it (``None``:
    the core)."""

    path: str
    type: str
    default: Any
    env: str | None
    secret: bool
    declared_by: str | None

    @property
    def section(self) -> str:
        """The top-level section, e.g. ``storage``."""
        return re.split(r"[.\[]", self.path, maxsplit=1)[0]


def type_name(schema: Any) -> str:
    """A schema entry's type in words: ``string``, ``size``, ``one of: a, b``, ..."""
    builtin = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "mapping"}
    if schema in builtin:
        return builtin[schema]
    if isinstance(schema, config_mod.OneOf):
        return "one of: " + ", ".join(schema.choices)
    if isinstance(schema, config_mod.HttpUrl):
        return "http(s) URL"
    names = {config_mod.Size: "size", config_mod.Duration: "duration", config_mod.Secret: "string",
             config_mod.Workers: "integer or auto"}
    cls = schema if isinstance(schema, type) else type(schema)
    for base, name in names.items():
        if issubclass(cls, base):
            return name
    return cls.__name__


def _env_name(parts: list[str]) -> str | None:
    """The variable that sets the key at ``parts``; ``None`` when no variable
    can (a ``-`` in a name, inside a list, a free-form name)."""
    if any("-" in p or p.endswith("[]") or p == ANY_NAME for p in parts):
        return None
    return ENV_PREFIX + "_".join(p.upper() for p in parts)


def _default(parts: list[str]) -> Any:
    node: Any = DEFAULTS
    for key in parts:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _walk(schema: dict, parts: list[str], owner: str | None, owners: dict[str, str],
          in_list: bool = False) -> Iterator[ConfigKey]:
    for key, sub in schema.items():
        name = ANY_NAME if key == ANY_KEY else key
        here = [*parts, name]
        dotted = ".".join(here)
        declared_by = owners.get(dotted, owner)
        if isinstance(sub, dict):
            if declared_by != owner or not sub:
                # A section a plugin declares (or an empty one): listed itself.
                yield ConfigKey(dotted, "section", None, None if in_list else _env_name(here), False, declared_by)
            yield from _walk(sub, here, declared_by, owners, in_list)
            continue
        default = None if in_list else _default(here)
        yield ConfigKey(dotted, type_name(sub), default, None if in_list else _env_name(here), is_secret(sub),
                        declared_by)
        entries = _LIST_ENTRIES.get(dotted)
        if entries:
            for entry_schema, entry_owner in entries(owners):
                yield from _walk(entry_schema, [f"{dotted}[]"], entry_owner, {}, in_list=True)


def _endpoint_entries(owners: dict) -> Iterator[tuple[dict, str | None]]:
    from cargohold.events.endpoints import ENDPOINT_SCHEMA

    yield ENDPOINT_SCHEMA, None
    for sink, schema, plugin in owners.get("__sinks__", ()):
        yield {k: v for k, v in schema.items() if k not in ENDPOINT_SCHEMA}, f"{plugin} (type: {sink})"


def _upstream_entries(owners: dict) -> Iterator[tuple[dict, str | None]]:
    yield PROXY_UPSTREAM_SCHEMA, None


_LIST_ENTRIES = {"notifications.endpoints": _endpoint_entries, "proxy.upstreams": _upstream_entries}


def _plugin_label(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or repr(plugin)
    dist = getattr(pm, "cargohold_distributions", {}).get(name)
    if dist:
        return dist[0]
    return name


def _sink_schema(factory: Any) -> dict | None:
    """A sink factory's ``schema``: its own attribute, or its class's for a
    classmethod (``WebhookSink.from_config``)."""
    schema = getattr(factory, "schema", None)
    if schema is None:
        schema = getattr(getattr(factory, "__self__", None), "schema", None)
    return schema if isinstance(schema, dict) else None


def config_keys(pm: pluggy.PluginManager) -> list[ConfigKey]:
    """Every key the configuration accepts with ``pm``'s plugins loaded, in
    schema order (the core's sections first)."""
    owners: dict[str, Any] = {}
    contributed = []
    for impl in reversed(pm.hook.cargohold_config_schema.get_hookimpls()):  # call order
        declared = impl.function() or {}
        contributed.append(declared)
        label = _plugin_label(pm, impl.plugin)
        for dotted in declared:
            owners[dotted] = label
    owners["__sinks__"] = [
        (sink, _sink_schema(factory), _plugin_label(pm, impl.plugin))
        for impl in pm.hook.cargohold_notification_sinks.get_hookimpls()
        for sink, factory in sorted((impl.function() or {}).items())
        if isinstance(_sink_schema(factory), dict)]
    tree = config_mod._schema_tree(config_mod.config_schemas(contributed))
    return list(_walk(tree, [], None, owners))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _show_default(key: ConfigKey) -> str:
    if key.default is None or isinstance(key.default, dict):
        return ""
    if key.secret and key.default:
        return "`******`"
    return "`" + _cell(json.dumps(key.default)) + "`"


def config_reference(pm: pluggy.PluginManager) -> str:
    """The configuration reference page: one table per top-level section."""
    keys = config_keys(pm)
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the schemas the core and the installed plugins declare "
        "(`cargohold config-reference`); do not edit. -->",
        "",
        "Every key `cargohold` accepts with the plugins of this build installed, generated from the",
        "schemas the core and each plugin declare (the `cargohold_config_schema` hook), so it lists",
        "exactly what start-up validates. Run `cargohold config-reference` to print it for the plugins",
        "installed on your machine. How the file, the defaults and the environment combine is in",
        "[Configuration](configuration.md).",
        "",
        "- **Default**: the value the core starts from; an empty cell means none (the plugin's own",
        "  default applies, as its page says, or the key is unset).",
        "- **Environment**: the variable that overrides the key (values are coerced to the key's type;",
        "  lists take `a,b,c`). Keys inside list entries, free-form `<name>` keys and names with `-`",
        "  cannot be set from the environment. A name with `_` is reachable once the file or the",
        "  defaults have that key.",
        "- `[]` marks the entries of a list; `<name>` any key of a free-form mapping.",
        "- *secret* values are shown as `******` by `cargohold config` and in error messages.",
        "",
    ]
    sections: dict[str, list[ConfigKey]] = {}
    for key in keys:
        sections.setdefault(key.section, []).append(key)
    for section, rows in sections.items():
        out += [f"## `{section}`", ""]
        declarers = sorted({k.declared_by for k in rows if k.declared_by})
        if declarers:
            out += ["Keys from plugins: " + ", ".join(f"`{d}`" for d in declarers) + ".", ""]
        out += ["| Key | Type | Default | Environment | Declared by |", "| --- | --- | --- | --- | --- |"]
        for key in rows:
            kind = key.type + (" (*secret*)" if key.secret else "")
            env = f"`{key.env}`" if key.env else ""
            out.append(f"| `{_cell(key.path)}` | {_cell(kind)} | {_show_default(key)} | {env} | "
                       f"{_cell(key.declared_by or 'core')} |")
        out.append("")
    return "\n".join(out)


def _hook_signature(name: str, function: Any) -> str:
    signature = inspect.signature(function)
    params = ", ".join(
        p.name + (f": {p.annotation}" if p.annotation is not inspect.Parameter.empty else "")
        for p in signature.parameters.values())
    returns = signature.return_annotation
    returns = "" if returns is inspect.Signature.empty else f" -> {returns}"
    return f"def {name}({params}){returns}"


def _rst_to_markdown(text: str) -> str:
    """The reStructuredText of the hookspec docstrings, as Markdown: roles
    (``:class:`x```) and double back-quotes become code spans."""
    text = re.sub(r":(?:class|data|func|meth|mod|attr|exc):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def hook_reference() -> str:
    """The hook reference page, from :mod:`cargohold.hookspecs`."""
    out = [
        "# Hook reference",
        "",
        "<!-- Generated from core/cargohold/hookspecs.py (`cargohold hook-reference`); do not edit. -->",
        "",
        _rst_to_markdown(inspect.cleandoc(hookspecs.__doc__ or "")),
        "",
    ]
    marker = f"{hookspecs.hookspec.project_name}_spec"
    functions = sorted(inspect.getmembers(hookspecs, inspect.isfunction), key=lambda m: m[1].__code__.co_firstlineno)
    for name, function in functions:
        options = getattr(function, marker, None)
        if options is None:
            continue
        flags = [flag for flag in ("firstresult", "historic") if options.get(flag)]
        out += [f"## `{name}`", "", "```python", _hook_signature(name, function), "```", ""]
        if flags:
            out += ["*" + ", ".join(flags) + "*", ""]
        out += [_rst_to_markdown(inspect.cleandoc(function.__doc__ or "")), ""]
    return "\n".join(out)
