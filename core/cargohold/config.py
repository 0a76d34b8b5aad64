"""Configuration: defaults, a YAML file, environment overrides, validation.

The file has the shape of the reference registry's ``config.yml`` (``version``,
``log``, ``storage``, ``http``, ``auth``, ``notifications``, ...).  Layers, each
overriding the one before:

1. :data:`DEFAULTS`;
2. the YAML file (``yaml.safe_load``), deep-merged: a mapping merges into a
   mapping, anything else replaces; an empty value (``key:``) keeps the layer
   below;
3. ``CARGOHOLD_*`` environment variables (see below).

:func:`read_config` builds the raw result; :func:`validate` checks it against
the core's :data:`CORE_SCHEMA` plus the schemas plugins contribute through
``cargohold_config_schema`` and returns it with values coerced to their types.

Environment overrides
    ``CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x`` sets
    ``storage.filesystem.rootdirectory``: the name after the prefix is
    lower-cased and split on ``_`` into the key path.  Where several parts
    joined by ``_`` name a key that already exists (from the defaults or the
    file), that key is used, so ``storage.azure.max_retries`` is reachable
    once the file has it; keys containing ``-`` (HTTP header names, some
    plugin keys) cannot be set from the environment at all.  Values stay
    strings until :func:`validate` coerces them by schema type (``"true"``
    becomes a bool where the schema says bool, ``"0123"`` stays a string where
    it says str; lists take ``a,b,c``).  Lists cannot be indexed.
    ``CARGOHOLD_STORAGE=<driver>`` picks the storage driver (keeping that
    driver's settings, if any, and dropping the others); ``CARGOHOLD_AUTH=<name>``
    likewise picks the auth provider, and ``CARGOHOLD_AUTH=`` (empty) removes
    it.  :data:`RESERVED_ENV` names are not configuration and are ignored.

Storage drivers and auth providers
    The driver is the one key of ``storage`` other than :data:`STORAGE_RESERVED`;
    ``auth`` holds at most one provider.  The default driver
    (:data:`DEFAULT_STORAGE`) gives way as soon as the file or the environment names another, so a file
    with ``storage: {s3: ...}`` does not also carry ``filesystem``.  A file
    naming one driver while the environment names another is an error:
    ``CARGOHOLD_STORAGE=<name>`` says which one is meant.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from typing import Any, Mapping
from urllib.parse import SplitResult, urlsplit

import yaml

__all__ = [
    "ANY_KEY", "CORE_SCHEMA", "DEFAULT_STORAGE", "DEFAULTS", "PROXY_UPSTREAM_SCHEMA", "RESERVED_ENV", "STORAGE_RESERVED",
    "ConfigError", "Duration", "HttpUrl", "OneOf", "Secret", "Size", "Workers",
    "auth_provider", "check_section", "config_schemas", "disabled_plugins", "is_secret", "mask_secrets", "parse_addr",
    "read_config",
    "storage_driver", "validate",
]

ENV_PREFIX = "CARGOHOLD_"

#: Environment variables with the prefix that are not configuration.
RESERVED_ENV = frozenset({"CARGOHOLD_CONFIG", "CARGOHOLD_TRACE", "CARGOHOLD_METRICS_DIR"})

#: Keys of ``storage`` that are not a driver (as in the reference registry).
STORAGE_RESERVED = frozenset({"delete", "redirect", "maintenance", "cache", "tag", "listing"})

#: In a schema mapping, the type of every key not listed explicitly.
ANY_KEY = "*"

#: The storage driver a configuration gets when it names none: the reference
#: registry's default, its filesystem driver under a local directory.  Only a
#: name and settings: the driver is found by that name through
#: ``cargohold_storage_drivers`` like any other, and the plugin offering it
#: (cargohold-storage-filesystem, which this distribution depends on)
#: declares and validates the section.  A file or environment naming another
#: driver replaces it.
DEFAULT_STORAGE: dict[str, Any] = {"filesystem": {"rootdirectory": "./data"}}

DEFAULTS: dict[str, Any] = {
    "version": "0.1",
    "log": {"level": "info", "formatter": "text", "fields": {}, "accesslog": {"disabled": False}},
    "storage": {
        **DEFAULT_STORAGE,
        "delete": {"enabled": False},
        "redirect": {"disable": False},
        "maintenance": {
            "uploadpurging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False},
            "readonly": {"enabled": False},
            "gc": {"enabled": False, "interval": "24h", "grace": "1h", "deleteuntagged": False, "dryrun": False},
        },
        "cache": {"manifestsize": "64MiB"},
        "listing": {"mode": "auto"},
    },
    "http": {
        "addr": ":5000",
        "host": "",
        "trustedproxies": 0,
        "secret": "",
        "prefix": "",
        "tls": {"certificate": "", "key": "", "clientcas": [], "minimumtls": "tls1.2"},
        "draintimeout": "30s",
        "timeouts": {"header": "20s", "body": "60s", "idle": "75s", "tlshandshake": "10s"},
        "maxconnections": 10000,
        "workers": 1,
        "headers": {"X-Content-Type-Options": ["nosniff"]},
        "debug": {"addr": "", "prometheus": {"enabled": True, "path": "/metrics"}},
    },
    "auth": {},
    "notifications": {"endpoints": [], "queuedir": ""},
    "reporting": {},
    "validation": {"manifests": {"maxsize": "4MiB"}},
    "plugins": {"disabled": []},
}

# Reference-registry options cargohold does not implement: named as such
# rather than as typos.
_REFERENCE_ONLY = frozenset({
    "loglevel", "middleware", "redis", "health",
    "log.hooks",
    "storage.cache.blobdescriptor", "storage.cache.blobdescriptorsize", "storage.tag",
    "http.net", "http.relativeurls", "http.http2", "http.h2c",
    "http.tls.clientauth", "http.tls.ciphersuites", "http.tls.letsencrypt",
    "notifications.events",
    "validation.disabled", "validation.manifests.urls", "validation.manifests.indexes",
})



class ConfigError(Exception):
    """The configuration is unusable.  ``problems`` lists one message per
    problem, each naming the file, environment variable or dotted key at
    fault; ``str()`` is one ``config: <problem>`` line per problem."""

    def __init__(self, *problems: str):
        self.problems = list(problems) or ["invalid configuration"]
        super().__init__("\n".join(f"config: {p}" for p in self.problems))


# -- value types ----------------------------------------------------------------
#
# A value type is anything with ``coerce(value) -> value`` that raises
# ValueError("expected ...") for a bad value; the caller adds the key and what
# it got.  Plugins may define their own the same way.


class Size:
    """A size in bytes, coerced to ``int``.  Accepts a non-negative integer
    or a string: a number with an optional unit, ``B``; ``KiB``/``MiB``/
    ``GiB``/``TiB`` (or ``Ki``...) and the bare letters ``k``/``M``/``G``/``T``
    are powers of 1024 (as in nginx and docker); ``kB``/``KB``/``MB``/``GB``/
    ``TB`` are powers of 1000.  ``"4MiB"`` and ``"4M"`` are 4194304."""

    _RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)(b?)|(b?))", re.IGNORECASE)
    _POWER = {"k": 1, "m": 2, "g": 3, "t": 4}

    @classmethod
    def coerce(cls, value: Any) -> int:
        expected = "expected a size such as 4194304, 512k or 4MiB"
        if isinstance(value, bool):
            raise ValueError(expected)
        if isinstance(value, int):
            if value < 0:
                raise ValueError(expected)
            return value
        if not isinstance(value, str):
            raise ValueError(expected)
        m = cls._RE.fullmatch(value.strip())
        if not m:
            raise ValueError(expected)
        number, letter, binary, b, _ = m.groups()
        if letter:
            base = 1000 if (b and not binary) else 1024
            number_f = float(number) * base ** cls._POWER[letter.lower()]
        else:
            number_f = float(number)
        return int(round(number_f))


class Duration:
    """A duration, coerced to ``float`` seconds.  Accepts a non-negative number
    of seconds, or a string in Go's notation: numbers with units ``ns``,
    ``us``, ``ms``, ``s``, ``m``, ``h``, e.g. ``30s``, ``1m30s``, ``168h``.  A
    string without a unit is seconds too (the reference registry would read
    nanoseconds)."""

    _PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
    _RE = re.compile(f"(?:{_PART})+")
    _UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

    @classmethod
    def coerce(cls, value: Any) -> float:
        expected = "expected a duration such as 30s, 1m30s or 168h"
        if isinstance(value, bool):
            raise ValueError(expected)
        if isinstance(value, (int, float)):
            if value < 0 or not math.isfinite(value):
                raise ValueError(expected)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(expected)
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not cls._RE.fullmatch(text):
                raise ValueError(expected) from None
            return sum(float(n) * cls._UNITS[u] for n, u in re.findall(cls._PART, text))
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(expected)
        return seconds


class OneOf:
    """A string from a fixed set, compared case-insensitively and returned
    lower-cased."""

    def __init__(self, *choices: str):
        self.choices = tuple(c.lower() for c in choices)

    def coerce(self, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        raise ValueError("expected one of " + ", ".join(self.choices))

    def __repr__(self) -> str:
        return f"OneOf{self.choices!r}"


class HttpUrl:
    """An ``http://`` or ``https://`` URL with a host (and a valid port, if
    it has one), stripped; or empty, ``""``.  ``userinfo`` says whether the
    URL must have a ``user@`` part (a DSN's key) or must not (the default:
    credentials have keys of their own).  ``expected`` ends the message for
    a bad value.  Subclasses add checks in :meth:`accept`."""

    def __init__(self, expected: str = "an http(s) URL such as https://example.com/path", userinfo: bool = False):
        self.expected = expected
        self.userinfo = userinfo

    def coerce(self, value: Any) -> str:
        if value in (None, ""):
            return ""
        text = value.strip() if isinstance(value, str) else ""
        try:
            parts = urlsplit(text)
            ok = (parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
                  and bool(parts.username) == self.userinfo and self.accept(parts))
        except ValueError:  # a bad port
            ok = False
        if not ok:
            raise ValueError(f"expected {self.expected}")
        return text

    def accept(self, parts: SplitResult) -> bool:
        """Whether a well-formed URL, split, is acceptable here too."""
        return True

    def __repr__(self) -> str:
        return f"HttpUrl({self.expected!r})"


class Workers:
    """A worker process count: an integer >= 0, or ``"auto"``.  ``0`` and
    ``"auto"`` both become ``0``, meaning one worker per CPU."""

    @classmethod
    def coerce(cls, value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return 0
        try:
            n = -1 if isinstance(value, bool) else _coerce_int(value)
        except ValueError:
            n = -1
        if n < 0:
            raise ValueError("expected a number of workers (0 or 'auto' for one per CPU)")
        return n


class Secret:
    """A credential (a password, an access key, a DSN): a string that
    ``cargohold config`` shows as ``******`` and errors describe as "a
    hidden value".  Each plugin declares its own secret keys with it in
    ``cargohold_config_schema``; any other value type becomes secret by
    having a true ``secret`` attribute."""

    secret = True

    @classmethod
    def coerce(cls, value: Any) -> str:
        return _coerce_str(value)


def is_secret(schema: Any) -> bool:
    """Whether a schema entry declares a secret value (see :class:`Secret`)."""
    return getattr(schema, "secret", False) is True


def _coerce_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `version: 0.1` or `secret: 1234` as numbers
    raise ValueError("expected a string")


def _coerce_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ValueError("expected an integer")


def _coerce_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError("expected a number")


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("expected a boolean")


def _coerce_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return copy.deepcopy(list(value))
    if isinstance(value, str):  # from the environment: a,b,c
        return [part.strip() for part in value.split(",") if part.strip()]
    raise ValueError("expected a list")


def _coerce_dict(value: Any) -> dict:
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if value == "":  # CARGOHOLD_STORAGE_INMEMORY= : an empty section
        return {}
    raise ValueError("expected a mapping")


_BUILTIN_TYPES = {
    str: _coerce_str, int: _coerce_int, float: _coerce_float,
    bool: _coerce_bool, list: _coerce_list, dict: _coerce_dict,
}

# The value an unset (None) key takes, per builtin type.
_ZERO = {str: "", int: 0, float: 0.0, bool: False, list: [], dict: {}}


# -- the core's schema ----------------------------------------------------------

CORE_SCHEMA: dict[str, Any] = {
    "version": str,
    "log": {
        "level": OneOf("error", "warn", "warning", "info", "debug"),
        "formatter": OneOf("text", "json"),
        "fields": {ANY_KEY: str},  # added to every log line
        "accesslog": {"disabled": bool},
    },
    "storage": {
        "delete": {"enabled": bool},
        "redirect": {"disable": bool},
        "maintenance": {
            "uploadpurging": {"enabled": bool, "age": Duration, "interval": Duration, "dryrun": bool},
            # Refuse every write (405 UNSUPPORTED) and pause upload purging;
            # applied live on SIGHUP (cargohold.app.LIVE_KEYS).
            "readonly": {"enabled": bool},
            # Online garbage collection (cargohold.gc); grace also tells requests how
            # often to record their uses of a digest.
            "gc": {"enabled": bool, "interval": Duration, "grace": Duration, "deleteuntagged": bool,
                   "dryrun": bool},
        },
        "cache": {"manifestsize": Size},  # bytes of manifests each process keeps in memory
        # Catalog and tags lists: from the listing index kept in the store
        # (cargohold.registry.catalog), by walking the layout, or auto (the
        # index on object stores).
        "listing": {"mode": OneOf("auto", "index", "walk")},
        ANY_KEY: dict,  # the driver's section; its plugin may contribute a schema
    },
    "http": {
        "addr": str,
        "host": str,
        "trustedproxies": int,
        "secret": Secret,
        "prefix": str,
        "tls": {
            "certificate": str,
            "key": str,
            "clientcas": list,
            "minimumtls": OneOf("tls1.0", "tls1.1", "tls1.2", "tls1.3"),
        },
        "draintimeout": Duration,
        # Slow or silent clients (see cargohold.server): the whole request
        # line and headers; no body byte read or written for this long; a
        # kept-alive connection without a new request; the TLS handshake.
        "timeouts": {"header": Duration, "body": Duration, "idle": Duration, "tlshandshake": Duration},
        "maxconnections": int,  # open connections per worker; the oldest idle ones make room
        "workers": Workers,
        "headers": {ANY_KEY: list},
        "debug": {  # /metrics and /healthz on a separate address (see cargohold.ops)
            "addr": str,
            "prometheus": {"enabled": bool, "path": str},
        },
    },
    "auth": {ANY_KEY: dict},
    "notifications": {"endpoints": list, "queuedir": str},
    "reporting": {ANY_KEY: dict},
    "validation": {"manifests": {"maxsize": Size}},
    "plugins": {"disabled": list, ANY_KEY: dict},
    # Pull-through cache (cargohold.proxy); no section, no proxy.  The simple
    # form is the reference's: the whole registry mirrors ``remoteurl``.
    "proxy": {
        "remoteurl": str,
        "username": str,
        "password": Secret,
        "ttl": Duration,      # cached content not pulled for this long expires
        "tagttl": Duration,   # a tag is revalidated upstream after this long
        "timeout": Duration,  # connect and read timeout towards the upstream
        "upstreams": list,    # entries: PROXY_UPSTREAM_SCHEMA
    },
}

#: One entry of ``proxy.upstreams``: the upstream ``url`` (with its
#: credentials and timings) serving the local repositories below ``prefix``
#: (``dockerhub/``) and/or the requests whose ``ns`` query parameter is one of
#: ``ns`` (``docker.io``; the distribution-spec's mirror namespace).
PROXY_UPSTREAM_SCHEMA: dict[str, Any] = {
    "url": str,
    "username": str,
    "password": Secret,
    "ttl": Duration,
    "tagttl": Duration,
    "timeout": Duration,
    "prefix": str,
    "ns": list,
}


# -- reading --------------------------------------------------------------------


class _Config(dict):
    """The raw configuration, remembering which keys the environment set so
    that errors can name the variable."""

    origins: dict[str, str]


def read_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping | None = None) -> dict:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``
    (a mapping merged like the file's contents, e.g. a test's settings), then
    ``CARGOHOLD_*`` variables from ``environ`` (default ``os.environ``; pass
    ``{}`` for none).  Returns the raw, unvalidated configuration: pass it to
    :func:`validate`.

    Raises :class:`ConfigError` for a missing, unreadable or invalid file, a
    file whose top level is not a mapping, or an environment variable that
    addresses a key inside a value that is not a section.
    """
    environ = os.environ if environ is None else environ
    config = _Config(copy.deepcopy(DEFAULTS))
    config.origins = {}
    picked = False
    if path:
        picked = _merge_layer(config, _load_yaml(path))
    if overrides:
        picked = _merge_layer(config, overrides) or picked
    _apply_environ(config, environ, picked)
    return config


def _load_yaml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the file: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = ", ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"{path}{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {_describe(data)}")
    return data


def _drivers(section: Any, reserved: frozenset = frozenset()) -> list[str]:
    if not isinstance(section, Mapping):
        return []
    return [k for k in section if k not in reserved]


def _merge(base: dict, over: Mapping) -> None:
    for key, value in over.items():
        if value is None and key in base:
            continue  # `key:` with nothing after it keeps the layer below
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _merge_layer(config: dict, data: Mapping) -> bool:
    """Merge a file's (or overrides') sections.  A storage driver or auth
    provider they name replaces the one below.  Returns whether they named a
    storage driver (so the environment naming another is a conflict)."""
    data = dict(data)
    picked = False
    for section, reserved in (("storage", STORAGE_RESERVED), ("auth", frozenset())):
        if isinstance(data.get(section), str):  # `storage: inmemory`, as the reference allows
            data[section] = {data[section]: {}}
        named = _drivers(data.get(section), reserved)
        if named and isinstance(config.get(section), dict):
            for name in _drivers(config[section], reserved):
                if name not in named:
                    del config[section][name]
        picked = picked or (section == "storage" and bool(named))
    _merge(config, data)
    return picked


def _apply_environ(config: _Config, environ: Mapping[str, str], picked: bool) -> None:
    items = sorted(
        (k, v) for k, v in environ.items()
        if k.startswith(ENV_PREFIX) and k not in RESERVED_ENV
    )
    # Selectors first, so that CARGOHOLD_STORAGE=s3 plus CARGOHOLD_STORAGE_S3_*
    # works in any order.
    for name, value in items:
        if name == "CARGOHOLD_STORAGE":
            _select(config, "storage", value.strip(), STORAGE_RESERVED)
            picked = True
        elif name == "CARGOHOLD_AUTH":
            _select(config, "auth", value.strip(), frozenset())
    for name, value in items:
        if name in ("CARGOHOLD_STORAGE", "CARGOHOLD_AUTH"):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("_")
        if not all(parts):
            raise ConfigError(f"environment variable {name}: empty key name between underscores")
        if parts[0] == "storage" and len(parts) >= 2 and not picked:
            # The first variable naming a driver replaces the default one.
            driver = _resolve_path(config, parts)[1]
            if driver not in STORAGE_RESERVED:
                for other in _drivers(config["storage"], STORAGE_RESERVED):
                    if other != driver:
                        del config["storage"][other]
                picked = True
        path = _resolve_path(config, parts)
        _set(config, path, value, name)
        config.origins[".".join(path)] = name


def _select(config: dict, section: str, name: str, reserved: frozenset) -> None:
    current = config.get(section)
    current = current if isinstance(current, dict) else {}
    kept = {k: v for k, v in current.items() if k in reserved}
    if name:
        if isinstance(current.get(name), dict):
            kept[name] = current[name]
        else:
            kept[name] = copy.deepcopy(DEFAULTS.get(section, {}).get(name, {}))
    config[section] = kept


def _resolve_path(config: dict, parts: list[str]) -> list[str]:
    """Map lower-cased name parts onto keys, preferring the longest run of
    parts that names an existing key (so ``max_retries`` stays one key)."""
    path: list[str] = []
    node: Any = config
    i = 0
    while i < len(parts):
        existing = {k.lower(): k for k in node if isinstance(k, str)} if isinstance(node, dict) else {}
        key, step = parts[i], 1
        for j in range(len(parts), i, -1):
            candidate = "_".join(parts[i:j])
            if candidate in existing:
                key, step = existing[candidate], j - i
                break
        path.append(key)
        node = node.get(key) if isinstance(node, dict) else None
        i += step
    return path


def _set(config: dict, path: list[str], value: str, var: str) -> None:
    node = config
    for depth, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            dotted = ".".join(path[: depth + 1])
            raise ConfigError(f"environment variable {var}: '{dotted}' is a value, not a section")
        node = child
    if isinstance(node.get(path[-1]), dict) and node[path[-1]]:
        dotted = ".".join(path)
        raise ConfigError(f"environment variable {var}: '{dotted}' is a section; set its keys "
                          f"({var}_<KEY>) instead")
    node[path[-1]] = value


# -- validation -----------------------------------------------------------------


def validate(config: Mapping, schemas: Mapping[str, Mapping] | None = None) -> dict:
    """Check ``config`` against :data:`CORE_SCHEMA` plus ``schemas`` (``{dotted
    section: schema}``, as returned by ``cargohold_config_schema``) and
    return a new dict with values coerced to their types (:class:`Size` to
    bytes, :class:`Duration` to seconds, strings to bool/int/float/list).

    A schema is a mapping of key to a type (``str``, ``int``, ``float``,
    ``bool``, ``list``, ``dict`` for free form), a value type (anything with
    ``coerce``, e.g. :class:`Size`) or a nested schema; :data:`ANY_KEY` gives
    the type of keys not listed.  Keys a schema does not describe are errors,
    except in sections nothing describes: a driver's, provider's or
    reporter's section without a contributed schema passes through as is.
    Also checked: exactly one storage driver, at most one auth provider,
    ``http.addr`` is ``host:port``, TLS certificate and key come together.
    Idempotent: validating a validated config returns an equal one.

    Raises :class:`ConfigError` listing every problem, each naming the full
    dotted key (and the environment variable, when one set it).
    """
    tree = _schema_tree(schemas or {})
    problems: list[str] = []
    result = _check(config, tree, "", problems, tree)
    _check_rules(result, problems)
    if problems:
        origins = getattr(config, "origins", {})
        raise ConfigError(*(_with_origin(p, origins) for p in problems))
    return result


def check_section(value: Any, schema: Mapping, path: str = "") -> dict:
    """Check one section (e.g. a list entry, which :func:`validate` cannot
    see into) against ``schema``, as :func:`validate` checks the config: the
    coerced values, or :class:`ConfigError` with every problem, each naming
    its key below ``path``."""
    problems: list[str] = []
    schema = dict(schema)
    result = _check(value, schema, path, problems, schema)
    if problems:
        raise ConfigError(*problems)
    return result


def check_driver_params(params: Mapping | None, schema: Mapping, section: str) -> dict:
    """A storage driver's parameters checked against its ``schema`` under
    ``section`` (``storage.<driver>``), as :func:`validate` checks a config
    file: they may be raw (strings from a test, ``"10MiB"``) or already
    coerced by the config loader.  Returns the coerced values; raises
    ``ValueError`` with the first problem, which starts with the dotted key at
    fault (``storage.s3.maxthreads: unknown key``), the form a driver's own
    checks use too."""
    try:
        return check_section(params or {}, schema, section)
    except ConfigError as exc:
        problem = exc.problems[0]
    unknown = re.match(r"unknown key '([^']*)'(.*)", problem)
    if unknown:
        problem = f"{unknown.group(1)}: unknown key{unknown.group(2)}"
    raise ValueError(problem)


def text_setting(values: Mapping, name: str) -> str | None:
    """The string setting ``name`` of checked ``values``, stripped; ``None``
    when unset or blank."""
    value = values.get(name)
    if value is None:
        return None
    return value.strip() or None


def _schema_tree(schemas: Mapping[str, Mapping]) -> dict:
    tree = copy.deepcopy(CORE_SCHEMA)
    for dotted, schema in schemas.items():
        *parents, last = dotted.split(".")
        node = tree
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        if isinstance(node.get(last), dict) and isinstance(schema, Mapping):
            node[last] = {**node[last], **copy.deepcopy(dict(schema))}
        else:
            node[last] = copy.deepcopy(dict(schema)) if isinstance(schema, Mapping) else schema
    return tree


def _check(value: Any, schema: Any, path: str, problems: list[str], root: dict) -> Any:
    if isinstance(schema, dict):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a section (a mapping of keys), got {_describe(value)}")
            return value
        out = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                problems.append(f"{path or 'top level'}: key {key!r} is not a string")
                continue
            dotted = f"{path}.{key}" if path else key
            if key in schema and key != ANY_KEY:
                out[key] = _check(sub, schema[key], dotted, problems, root)
            elif dotted in _REFERENCE_ONLY:
                problems.append(f"unknown key '{dotted}': a reference-registry option cargohold does not support")
            elif ANY_KEY in schema:
                out[key] = _check(sub, schema[ANY_KEY], dotted, problems, root)
            else:
                problems.append(f"unknown key '{dotted}'{_suggest(key, path, schema, root)}")
        return out
    if value is None:
        return copy.deepcopy(_ZERO.get(schema)) if schema in _ZERO else None
    coerce = _BUILTIN_TYPES.get(schema) or getattr(schema, "coerce", None)
    if coerce is None:
        raise TypeError(f"config schema for {path!r}: {schema!r} is not a type")
    try:
        return coerce(value)
    except ValueError as e:
        problems.append(f"{path}: {e}, got {_describe(value, is_secret(schema))}")
        return value


def _suggest(key: str, parent: str, schema: dict, root: dict) -> str:
    siblings = [k for k in schema if k != ANY_KEY]
    close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.6)
    if close:
        # Typos keep the start of a word: prefer the longest common prefix.
        best = max(close, key=lambda c: len(os.path.commonprefix([c, key])))
        return f" (did you mean '{parent + '.' if parent else ''}{best}'?)"
    elsewhere = [p for p in _schema_paths(root) if p.rsplit(".", 1)[-1] == key]
    if elsewhere:
        return f" (did you mean '{elsewhere[0]}'?)"
    return ""


def _schema_paths(schema: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, sub in schema.items():
        if key == ANY_KEY:
            continue
        dotted = f"{prefix}.{key}" if prefix else key
        paths.append(dotted)
        if isinstance(sub, dict):
            paths.extend(_schema_paths(sub, dotted))
    return paths


def _check_rules(config: Any, problems: list[str]) -> None:
    """Rules across keys.  Keys that already failed their type check are
    skipped (their section may not even be a mapping)."""
    reported = {p.split(":", 1)[0] for p in problems}

    def section(*path: str) -> dict:
        node = config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    # Only mappings count: a stray scalar was reported by the type check.
    drivers = [k for k, v in section("storage").items() if k not in STORAGE_RESERVED and isinstance(v, dict)]
    if not drivers:
        problems.append("storage: no storage driver configured (name one: storage.<driver>, e.g. storage.inmemory)")
    elif len(drivers) > 1:
        problems.append(
            f"storage: more than one storage driver configured ({', '.join(drivers)}); keep exactly one "
            "(CARGOHOLD_STORAGE=<name> picks one from the environment)")
    gc = section("storage", "maintenance", "gc")
    for key in ("grace", "interval"):
        value = gc.get(key)
        if f"storage.maintenance.gc.{key}" not in reported and isinstance(value, (int, float)) and value < 1:
            problems.append(f"storage.maintenance.gc.{key}: must be at least 1s, got {value:g}s")
    providers = [k for k, v in section("auth").items() if isinstance(v, dict)]
    if len(providers) > 1:
        problems.append(f"auth: more than one auth provider configured ({', '.join(providers)}); keep at most one")
    http, tls = section("http"), section("http", "tls")
    if "http.addr" not in reported:
        try:
            parse_addr(http.get("addr"))
        except ValueError as e:
            problems.append(f"http.addr: {e}")
    if bool(tls.get("certificate")) != bool(tls.get("key")):
        missing = "http.tls.key" if tls.get("certificate") else "http.tls.certificate"
        problems.append(f"{missing}: required when TLS is configured (http.tls.certificate and http.tls.key)")
    for name, value in section("http", "timeouts").items():
        if f"http.timeouts.{name}" not in reported and isinstance(value, (int, float)) and value <= 0:
            problems.append(f"http.timeouts.{name}: must be more than zero, got {value:g}s")
    maxconns = http.get("maxconnections")
    if "http.maxconnections" not in reported and isinstance(maxconns, int) and maxconns < 1:
        problems.append(f"http.maxconnections: must be at least 1, got {maxconns}")
    prefix = http.get("prefix", "")
    if "http.prefix" not in reported and prefix and not prefix.startswith("/"):
        problems.append(f"http.prefix: must start with '/', got {prefix!r}")
    debug = section("http", "debug")
    if "http.debug.addr" not in reported and debug.get("addr"):
        try:
            parse_addr(debug["addr"])
        except ValueError as e:
            problems.append(f"http.debug.addr: {e}")
    metrics_path = section("http", "debug", "prometheus").get("path", "/metrics")
    if "http.debug.prometheus.path" not in reported and isinstance(metrics_path, str) and (
            not metrics_path.startswith("/") or metrics_path.rstrip("/") in ("", "/v2")
            or metrics_path.startswith("/v2/")):
        problems.append(f"http.debug.prometheus.path: must start with '/' and stay outside /v2/, got {metrics_path!r}")
    if isinstance(config, dict) and isinstance(config.get("proxy"), dict) and not any(
            p.startswith("proxy") for p in reported):
        _check_proxy(config["proxy"], problems)
    version = config.get("version") if isinstance(config, dict) else None
    if "version" not in reported and not (isinstance(version, str) and re.fullmatch(r"\d+\.\d+", version)):
        problems.append(f"version: expected major.minor such as '0.1', got {version!r}")


_URL_RE = re.compile(r"https?://[^/\s?#]+/?", re.IGNORECASE)
_PREFIX_RE = re.compile(r"(?:[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*/)+")


def _check_proxy(proxy: dict, problems: list[str]) -> None:
    """``proxy.upstreams`` entries against :data:`PROXY_UPSTREAM_SCHEMA`
    (coerced in place), URLs, prefixes and ``ns`` values, and that no two
    upstreams claim the same prefix or ``ns``."""
    entries = proxy.get("upstreams") or []
    checked, prefixes, namespaces = [], {}, {}
    if proxy.get("remoteurl"):
        if not _URL_RE.fullmatch(proxy["remoteurl"].strip()):
            problems.append(f"proxy.remoteurl: expected http(s)://host[:port], got {proxy['remoteurl']!r}")
        prefixes[""] = "proxy.remoteurl"
    elif proxy.get("username") or proxy.get("password"):
        problems.append("proxy.username: credentials of the simple form need proxy.remoteurl")
    for i, entry in enumerate(entries):
        path = f"proxy.upstreams[{i}]"
        try:
            entry = check_section(entry, PROXY_UPSTREAM_SCHEMA, path)
        except ConfigError as e:
            problems.extend(e.problems)
            checked.append(entry)
            continue
        checked.append(entry)
        if not _URL_RE.fullmatch((entry.get("url") or "").strip()):
            problems.append(f"{path}.url: expected http(s)://host[:port], got {entry.get('url')!r}")
        prefix, ns = entry.get("prefix") or "", [str(n) for n in entry.get("ns") or []]
        if not prefix and not ns:
            problems.append(f"{path}: give the local namespace it serves (prefix: dockerhub/) or the ns it "
                            "answers (ns: [docker.io]), or both")
        if prefix and not _PREFIX_RE.fullmatch(prefix if prefix.endswith("/") else prefix + "/"):
            problems.append(f"{path}.prefix: expected repository name components ending in '/', such as "
                            f"'dockerhub/', got {prefix!r}")
        for value in ns:
            if not _PREFIX_RE.fullmatch(value + "/"):
                problems.append(f"{path}.ns: expected a registry host name such as 'docker.io', got {value!r}")
        local = (prefix.rstrip("/") + "/") if prefix else (ns[0] + "/" if ns else "")
        if local in prefixes:
            problems.append(f"{path}.prefix: {local!r} is already served by {prefixes[local]}")
        prefixes[local] = path
        for value in ns:
            if value in namespaces:
                problems.append(f"{path}.ns: {value!r} is already answered by {namespaces[value]}")
            namespaces[value] = path
    if entries:
        proxy["upstreams"] = checked


def _with_origin(problem: str, origins: Mapping[str, str]) -> str:
    m = re.match(r"(?:unknown key ')?([\w.\-*]+)", problem)
    if not m or not origins:
        return problem
    key = m.group(1)
    for dotted, var in origins.items():
        if dotted == key or dotted.startswith(key + "."):
            return f"{problem} (set by {var})"
    return problem


# -- helpers ----------------------------------------------------------------------


def parse_addr(addr: Any) -> tuple[str, int]:
    """Split ``host:port`` into ``(host, port)``.  An empty host (``":5000"``)
    means all interfaces; IPv6 hosts are bracketed (``[::1]:5000``), and
    returned without brackets.  Raises ``ValueError`` saying what is wrong."""
    expected = "expected host:port such as ':5000' or '127.0.0.1:5000'"
    if not isinstance(addr, str):
        raise ValueError(f"{expected}, got {addr!r}")
    host, sep, port = addr.strip().rpartition(":")
    if not sep:
        raise ValueError(f"{expected}, got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host needs brackets, as in '[::1]:5000', got {addr!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {addr!r}")
    return host, int(port)


def storage_driver(config: Mapping) -> str:
    """The configured storage driver's name (validated config)."""
    return _drivers(config["storage"], STORAGE_RESERVED)[0]


def auth_provider(config: Mapping) -> str | None:
    """The configured auth provider's name, or ``None`` for an open registry."""
    names = _drivers(config.get("auth"))
    return names[0] if names else None


def disabled_plugins(raw: Mapping) -> list[str]:
    """``plugins.disabled`` of a raw (unvalidated) configuration as a list:
    the plugin manager needs it before the rest can be validated.  Raises
    :class:`ConfigError` if it is neither a list nor a comma-separated string."""
    section = raw.get("plugins")
    value = section.get("disabled") if isinstance(section, Mapping) else None
    if value is None:
        return []
    try:
        return [str(name) for name in _coerce_list(value)]
    except ValueError as e:
        problem = f"plugins.disabled: {e}, got {_describe(value)}"
        raise ConfigError(_with_origin(problem, getattr(raw, "origins", {}))) from None


def config_schemas(contributed) -> dict[str, Any]:
    """Merge the ``{dotted section: schema}`` dicts plugins return from
    ``cargohold_config_schema`` (the hook's results, in call order)."""
    schemas: dict[str, Any] = {}
    for entry in contributed:
        schemas.update(entry or {})
    return schemas


def mask_secrets(config: Any, schemas: Mapping[str, Mapping] | None = None) -> Any:
    """A copy of ``config`` with every non-empty secret value replaced by
    ``"******"``: the keys the core's schema and ``schemas`` (as
    :func:`validate` takes them) declare :class:`Secret`, and, in parts no
    schema describes (a section without a contributed schema, the entries
    of a list), keys with a credential-like name
    (:func:`cargohold.scrub.is_credential_name`)."""
    return _mask(config, _schema_tree(schemas or {}))


def _mask(value: Any, schema: Any) -> Any:
    from cargohold.scrub import is_credential_name

    if isinstance(value, list):
        return [_mask(v, None) for v in value]
    if not isinstance(value, Mapping):
        return value
    described = isinstance(schema, dict)
    out = {}
    for key, sub in value.items():
        entry = (schema[key] if key in schema else schema.get(ANY_KEY)) if described else None
        secret = is_secret(entry) if entry is not None else is_credential_name(key)
        hide = secret and sub not in (None, "", []) and not isinstance(sub, Mapping)
        out[key] = "******" if hide else _mask(sub, entry if isinstance(entry, dict) else None)
    return out


def _describe(value: Any, secret: bool = False) -> str:
    if secret and not isinstance(value, (Mapping, list)):
        return "a hidden value"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
