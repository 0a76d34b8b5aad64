"""Upstream registries of the pull-through cache: their settings
(:class:`Upstream`) and an HTTP client with their authentication
(:class:`UpstreamClient`).

The client speaks to ``<url>/v2/<repository>/...`` with ``requests``
(urllib3 connection pools; cooperative under gevent's monkey patching).  It
answers the upstream's challenges itself:

* ``Basic``: the upstream's ``username``/``password``, sent preemptively from
  then on;
* ``Bearer realm=...,service=...,scope=...`` (the Docker token flow): a token
  from the realm (with the credentials as Basic auth when configured, else
  anonymous), cached per scope until shortly before it expires, and the
  request retried once.

Every request has a bounded connect and read timeout.  An upstream that
cannot be reached, times out, or answers 5xx/429 raises
:class:`~cargohold.errors.Unavailable` naming it; one that refuses the
mirror's credentials raises :class:`~cargohold.errors.Denied`.  Other
answers (200, 404...) are returned for the caller to interpret.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Any, Mapping

import requests
import requests.adapters

from cargohold.errors import Denied, Unavailable
from cargohold.manifests import MANIFEST_TYPES

log = logging.getLogger("cargohold.proxy")

#: ``Accept`` for manifest requests: every type cargohold stores.
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)

DEFAULT_TTL = 168 * 3600.0
DEFAULT_TAG_TTL = 300.0
DEFAULT_TIMEOUT = 30.0
#: Connections kept open per upstream host.
POOL_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Upstream:
    """One upstream registry and the local names it serves.

    ``prefix`` is the local namespace (``"dockerhub/"``; ``""`` for the simple
    form, where every repository is proxied); ``local/name`` below it maps to
    ``name`` upstream.  ``namespaces`` are the ``ns`` values (the
    distribution-spec's mirror parameter, ``?ns=docker.io``) it answers; such
    requests are served from ``prefix`` + name.  ``ttl``: cached content not
    pulled for this long expires (0: never).  ``tagttl``: a cached tag is
    served without asking the upstream for this long.  ``timeout``: connect
    and read timeout, in seconds."""

    url: str
    prefix: str = ""
    namespaces: tuple[str, ...] = ()
    username: str = ""
    password: str = ""
    ttl: float = DEFAULT_TTL
    tagttl: float = DEFAULT_TAG_TTL
    timeout: float = DEFAULT_TIMEOUT

    def remote_name(self, local: str) -> str:
        return local[len(self.prefix):]

    def serves(self, local: str) -> bool:
        return local.startswith(self.prefix) and len(local) > len(self.prefix)


def upstreams_from_config(section: Mapping[str, Any] | None) -> list[Upstream]:
    """The upstreams of a validated ``proxy`` section, most specific prefix
    first; the simple form (``remoteurl``) is the catch-all, last."""
    if not section:
        return []
    defaults = {
        "ttl": section.get("ttl", DEFAULT_TTL) if section.get("ttl") is not None else DEFAULT_TTL,
        "tagttl": section.get("tagttl") if section.get("tagttl") is not None else DEFAULT_TAG_TTL,
        "timeout": section.get("timeout") or DEFAULT_TIMEOUT,
    }
    found = []
    for entry in section.get("upstreams") or []:
        namespaces = tuple(str(n) for n in entry.get("ns") or [])
        prefix = entry.get("prefix") or ""
        prefix = prefix.rstrip("/") + "/" if prefix else namespaces[0] + "/"
        found.append(Upstream(
            url=entry["url"].strip().rstrip("/"), prefix=prefix, namespaces=namespaces,
            username=entry.get("username") or "", password=entry.get("password") or "",
            ttl=entry["ttl"] if entry.get("ttl") is not None else defaults["ttl"],
            tagttl=entry["tagttl"] if entry.get("tagttl") is not None else defaults["tagttl"],
            timeout=entry.get("timeout") or defaults["timeout"],
        ))
    found.sort(key=lambda u: -len(u.prefix))
    if section.get("remoteurl"):
        found.append(Upstream(
            url=section["remoteurl"].strip().rstrip("/"), username=section.get("username") or "",
            password=section.get("password") or "", **defaults))
    return found


_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``("bearer", {"realm": ..., "service": ..., "scope": ...})`` from a
    ``WWW-Authenticate`` value (scheme lower-cased; empty when absent)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


class UpstreamClient:
    """HTTP access to one :class:`Upstream`, with its authentication; see the
    module docstring.  One per upstream per process; safe to share between
    greenlets."""

    #: Renew a cached token this many seconds before it expires.
    TOKEN_MARGIN = 10.0

    def __init__(self, upstream: Upstream):
        from cargohold import __version__

        self.upstream = upstream
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"cargohold/{__version__} (pull-through cache)"
        self.session.trust_env = False  # no proxies or netrc from the environment
        # Many clients pulling at once: keep their connections for reuse.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False

    def close(self) -> None:
        self.session.close()

    # -- requests ------------------------------------------------------------

    def url(self, repository: str, path: str) -> str:
        return f"{self.upstream.url}/v2/{repository}/{path}"

    def request(self, method: str, repository: str, path: str, headers: Mapping[str, str] | None = None,
                params: Any = None, stream: bool = False) -> requests.Response:
        """``method`` on ``/v2/<repository>/<path>`` upstream, authenticated
        for ``repository:<repository>:pull``.  Raises ``Unavailable`` or
        ``Denied`` (see the module docstring); else returns the response
        (with ``stream``, the caller closes it)."""
        url = self.url(repository, path)
        scope = f"repository:{repository}:pull"
        for attempt in (1, 2):
            sent = dict(headers or {})
            sent.update(self._credentials(scope))
            resp = self._send(method, url, headers=sent, params=params, stream=stream)
            if resp.status_code != 401 or attempt == 2:
                break
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            if not self._answer(challenge, scope):
                break
        if resp.status_code in (401, 403):
            resp.close()
            raise Denied(f"the upstream registry {self.upstream.url} refused the mirror's credentials "
                         f"for {repository}", detail={"upstream": self.upstream.url, "status": resp.status_code})
        if resp.status_code >= 500 or resp.status_code == 429:
            resp.close()
            raise self.unavailable(f"answered {resp.status_code}")
        return resp

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        timeout = self.upstream.timeout
        try:
            return self.session.request(method, url, timeout=(timeout, timeout), allow_redirects=True, **kwargs)
        except requests.RequestException as e:
            raise self.unavailable(_reason(e)) from None

    def unavailable(self, reason: str) -> Unavailable:
        """The error for an upstream that cannot serve now (503)."""
        return Unavailable(f"the upstream registry {self.upstream.url} is unreachable: {reason}",
                           detail={"upstream": self.upstream.url, "reason": reason})

    # -- authentication ------------------------------------------------------

    def _credentials(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token is not None:
            if token[1] > time.monotonic():
                return {"Authorization": f"Bearer {token[0]}"}
            self._tokens.pop(scope, None)
        if self._basic:
            return _basic_header(self.upstream.username, self.upstream.password)
        return {}

    def _answer(self, challenge: str, scope: str) -> bool:
        """Prepare credentials answering ``challenge``; whether a retry may
        succeed."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if not self.upstream.username or self._basic:
                return False
            self._basic = True
            return True
        if scheme != "bearer" or not params.get("realm", "").lower().startswith(("http://", "https://")):
            return False
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = (self.upstream.username, self.upstream.password) if self.upstream.username else None
        resp = self._send("GET", params["realm"], params=query, auth=auth)
        if resp.status_code in (401, 403):
            raise Denied(f"the token server of the upstream registry {self.upstream.url} refused the mirror's "
                         "credentials", detail={"upstream": self.upstream.url, "status": resp.status_code})
        if resp.status_code != 200:
            raise self.unavailable(f"its token server answered {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self.unavailable("its token server sent no token")
        self._tokens[scope] = (token, time.monotonic() + max(lifetime - self.TOKEN_MARGIN, lifetime / 2))
        return True


def _basic_header(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _reason(error: Exception) -> str:
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.ConnectionError):
        return "connection failed"
    return type(error).__name__
