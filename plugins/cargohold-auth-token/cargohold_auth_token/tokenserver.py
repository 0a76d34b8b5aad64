"""The built-in token server: the realm endpoint docker, containerd and
skopeo fetch bearer tokens from.

``GET <path>?service=...&scope=...&scope=...[&offline_token=true]``
    Optional ``Authorization: Basic`` credentials, checked against the
    htpasswd file.  Without credentials the caller is anonymous and gets
    what the access rules grant ``anonymous``; wrong credentials get 401.
    ``offline_token=true`` (with credentials) adds a refresh token.

``POST <path>`` (form; the OAuth2 flow of the spec)
    ``grant_type=password`` with ``username`` and ``password``, or
    ``grant_type=refresh_token`` with ``refresh_token``; plus ``service``,
    ``client_id`` and ``scope`` (scopes separated by spaces).  The password
    grant always returns a refresh token; the refresh grant returns the one
    it was given.

The token grants, per requested resource, the requested actions that the
access rules allow (possibly none: that is not an error, per the spec).
Answers ``{"token", "access_token", "expires_in", "issued_at", "scope",
"refresh_token"?}``; errors are the registry's JSON error document.
"""

from __future__ import annotations

import datetime
import logging

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from cargohold.access_control import AccessRules
from cargohold.auth import Access
from cargohold.errors import RegistryError, Unauthorized
from cargohold_auth_htpasswd.htpasswd import HtpasswdFile, InvalidCredentials

from .issuer import InvalidRefreshToken, TokenIssuer
from .scopes import format_scopes, parse_scopes

log = logging.getLogger("cargohold.auth")

EXTENSION = "cargohold_token_server"


#: Largest ``POST`` form accepted (a few short fields; a refresh token is under 1 KiB).
MAX_FORM_BYTES = 64 << 10


class TokenRequestInvalid(RegistryError):
    """A token request the server cannot act on: an unknown service or grant
    type, a malformed scope, a missing parameter (400)."""

    code, status, message = "TOKEN_REQUEST_INVALID", 400, "invalid token request"


class TokenServer:
    """Issues tokens for ``service``: users from ``htpasswd`` (``None``: only
    anonymous callers), grants from ``rules``, signed by ``issuer``."""

    def __init__(self, issuer: TokenIssuer, service: str, rules: AccessRules, htpasswd: HtpasswdFile | None):
        self.issuer = issuer
        self.service = service
        self.rules = rules
        self.htpasswd = htpasswd

    def grant(self, user: str | None, requested: list[Access]) -> list[Access]:
        """``requested`` narrowed to what ``user`` may do; resources with no
        allowed action are left out."""
        granted = []
        for access in requested:
            actions = self.rules.granted(user, access)
            if actions:
                granted.append(Access(access.type, access.name, tuple(actions)))
        return granted

    # -- requests --------------------------------------------------------------

    def handle_get(self):
        service = self._service(request.args.get("service"))
        requested = self._scopes(request.args.getlist("scope"))
        user = self._basic_user()
        offline = request.args.get("offline_token", "").lower() == "true"
        refresh = self.issuer.refresh_token(user, service) if offline and user else None
        return self._respond(user, service, requested, refresh)

    def handle_post(self):
        # The form is read whole: bound it, chunked bodies included.  A body
        # without Content-Length is cut at the limit; reading on past it is
        # what tells a longer one (RequestEntityTooLarge) from one that ended.
        request.max_content_length = MAX_FORM_BYTES
        try:
            form = request.form
            if request.content_length is None:
                request.stream.read(1)
        except RequestEntityTooLarge:
            raise TokenRequestInvalid(f"the token request's form is over {MAX_FORM_BYTES} bytes") from None
        service = self._service(form.get("service"))
        requested = self._scopes(form.getlist("scope"))
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            user = form.get("username", "")
            if not user or "password" not in form:
                raise TokenRequestInvalid("grant_type=password needs 'username' and 'password'")
            if self.htpasswd is None or not self.htpasswd.verify(user, form["password"]):
                log.warning("token request failed for user %r from %s: wrong user or password",
                            user, request.remote_addr or "-")
                raise self._unauthorized("invalid username or password")
            refresh = self.issuer.refresh_token(user, service)
        elif grant_type == "refresh_token":
            refresh = form.get("refresh_token", "")
            if not refresh:
                raise TokenRequestInvalid("grant_type=refresh_token needs 'refresh_token'")
            try:
                user = self.issuer.check_refresh_token(refresh, service).subject
            except InvalidRefreshToken as e:
                raise self._unauthorized(str(e)) from None
            if not self._user_exists(user):
                raise self._unauthorized("the refresh token's user no longer exists")
        else:
            raise TokenRequestInvalid(f"unsupported grant_type {grant_type[:40]!r} "
                                      "(expected 'password' or 'refresh_token')")
        return self._respond(user, service, requested, refresh)

    def _respond(self, user: str | None, service: str, requested: list[Access], refresh: str | None):
        granted = self.grant(user, requested)
        issued = self.issuer.access_token(user, service, granted)
        log.info("token issued to %s for %s: %s", user or "anonymous", service, format_scopes(granted) or "-")
        body = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": datetime.datetime.fromtimestamp(issued.issued_at, datetime.timezone.utc)
                                         .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "scope": format_scopes(granted),
        }
        if refresh:
            body["refresh_token"] = refresh
        resp = jsonify(body)
        resp.headers["Cache-Control"] = "no-store"  # tokens are credentials
        return resp

    # -- helpers ------------------------------------------------------------------

    def _service(self, value: str | None) -> str:
        if value and value != self.service:
            raise TokenRequestInvalid(f"this token server issues tokens for service {self.service!r}, "
                                      f"not {value[:100]!r}")
        return self.service

    @staticmethod
    def _scopes(values: list[str]) -> list[Access]:
        try:
            return parse_scopes(values)
        except ValueError as e:
            raise TokenRequestInvalid(str(e)) from None

    def _basic_user(self) -> str | None:
        header = request.headers.get("Authorization")
        if not header:
            return None
        if self.htpasswd is None:
            raise self._unauthorized("this token server has no users (tokenserver.htpasswd); "
                                     "request without credentials")
        try:
            user = self.htpasswd.authenticate(header, request.remote_addr)
        except InvalidCredentials:
            raise self._unauthorized("invalid username or password") from None
        if user is None:
            raise self._unauthorized("expected Basic credentials")
        return user

    def _user_exists(self, user: str) -> bool:
        if self.htpasswd is None:
            return False
        self.htpasswd.refresh()
        return user in self.htpasswd.users()

    def _unauthorized(self, message: str) -> Unauthorized:
        return Unauthorized(message, headers={"WWW-Authenticate": f'Basic realm="{self.service} token server"'})


def make_blueprint(path: str) -> Blueprint:
    """The token endpoint at ``path``, served by the app's :class:`TokenServer`."""
    bp = Blueprint("token_server", __name__)

    def token():
        server: TokenServer = current_app.extensions[EXTENSION]
        return server.handle_post() if request.method == "POST" else server.handle_get()

    bp.add_url_rule(path, "token", token, methods=["GET", "POST"])
    return bp
