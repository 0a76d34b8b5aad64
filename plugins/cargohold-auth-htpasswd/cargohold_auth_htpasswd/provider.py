"""The ``htpasswd`` auth provider: HTTP Basic credentials checked against a
bcrypt htpasswd file, then access rules."""

from __future__ import annotations

import functools

from cargohold.access_control import AccessRules
from cargohold.auth import Access, AuthProvider, Challenge, Forbidden, Grant
from cargohold_auth_htpasswd.htpasswd import HtpasswdFile, InvalidCredentials


class HtpasswdProvider(AuthProvider):
    """Authenticates callers with Basic credentials from ``htpasswd`` and
    authorizes them with ``rules``.

    * No credentials: anonymous, allowed exactly what the rules grant
      ``anonymous``; anything more is answered 401 with
      ``WWW-Authenticate: Basic realm="<realm>"`` (so clients send
      credentials).  The base ``GET /v2/`` check always wants credentials,
      as the reference registry does.
    * Malformed or wrong credentials: 401 with the same challenge.
    * Valid credentials but an action the rules do not grant: 403 DENIED.

    The grant's ``may_pull`` is the rules' ``may_pull`` for the caller, so
    the catalog lists only repositories the caller may pull.
    """

    def __init__(self, htpasswd: HtpasswdFile, rules: AccessRules, realm: str):
        self.htpasswd = htpasswd
        self.rules = rules
        self.realm = realm
        self.challenge = 'Basic realm="{}"'.format(realm.replace("\\", "\\\\").replace('"', '\\"'))

    def authorize(self, request, access: list[Access]) -> Grant:
        try:
            user = self.htpasswd.authenticate(request.headers.get("Authorization"), request.remote_addr)
        except InvalidCredentials:
            raise Challenge(self.challenge, "invalid credentials") from None
        if user is None and not access:
            raise Challenge(self.challenge)
        for item in access:
            granted = self.rules.granted(user, item)
            if len(granted) != len(item.actions):
                missing = [a for a in item.actions if a not in granted]
                detail = [{"Type": item.type, "Name": item.name, "Action": a} for a in missing]
                if user is None:
                    raise Challenge(self.challenge, detail=detail)
                raise Forbidden(detail=detail)
        return Grant(user=user, allowed=functools.partial(self.rules.may_pull, user))
