"""With auth on, no route of the v2 API does anything for a caller without
valid credentials: every route and method answers 401 with a
``WWW-Authenticate`` challenge and the spec's error body, with no
credentials and with each kind of bad credentials.

The table of routes is checked against the app's URL map, so a new route
fails this test until it is added here.  Providers are a table too: each
entry of :data:`PROVIDERS` builds the config and credentials for one auth
provider plugin.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest

from cargohold.app import create_app
from cargohold.testing.auth import basic, write_htpasswd

from .conftest import BASE_CONFIG
from .helpers import OCI_MANIFEST, digest_of, push_image

REPO = "private/app"  # nobody but an authenticated caller may touch it
SOURCE = "private/src"


@dataclasses.dataclass
class ProviderCase:
    """How to run one auth provider for this test.

    :param auth: the config's ``auth`` section selecting the provider.
    :param valid: request headers of a caller allowed everything (used to
        set up content, and to check the routes do work with credentials).
    :param invalid: named request headers that must be refused with 401.
    :param challenge: what every ``WWW-Authenticate`` value starts with.
    :param config: other config sections the provider needs (e.g. a
        token server's).
    """

    auth: dict
    valid: dict[str, str]
    invalid: dict[str, dict[str, str]]
    challenge: str
    config: dict = dataclasses.field(default_factory=dict)


def htpasswd_case(tmp_path) -> ProviderCase:
    path = write_htpasswd(tmp_path / "htpasswd", {"admin": "s3cret", "other": "pw"})
    rules = tmp_path / "access.yml"
    rules.write_text(
        "rules:\n"
        "  - {repositories: ['public/*'], users: [anonymous], actions: [pull]}\n"
        "  - {repositories: ['**'], users: [admin], actions: ['*']}\n"
        "  - {registry: catalog, users: [admin]}\n"
    )
    return ProviderCase(
        auth={"htpasswd": {"realm": "all-routes", "path": path, "access": str(rules)}},
        valid=basic("admin", "s3cret"),
        invalid={
            "wrong-password": basic("admin", "S3CRET"),
            "unknown-user": basic("nobody", "s3cret"),
            "other-users-password": basic("other", "s3cret"),
            "malformed": {"Authorization": "Basic not-base64!"},
            "empty": {"Authorization": ""},
            "bearer-instead": {"Authorization": "Bearer s3cret"},
        },
        challenge='Basic realm="all-routes"',
    )


def token_case(tmp_path) -> ProviderCase:
    """Bearer tokens: a valid one grants everything the routes touch; each
    bad one grants the same but is refused for one defect (the table of
    :func:`cargohold_auth_token.testing.bad_tokens`)."""
    from cargohold_auth_token.testing import REALM, SERVICE, Signer, bad_tokens, bearer, token_auth_config

    signer, stranger = Signer(tmp_path / "trusted"), Signer(tmp_path / "stranger")
    everything = [("repository", name, ["*"]) for name in (REPO, SOURCE, "a/b/c/d")]
    everything.append(("registry", "catalog", ["*"]))
    invalid = {name: bearer(token) for name, token in bad_tokens(signer, stranger, everything).items()}
    invalid.update({"empty": {"Authorization": "Bearer "}, "basic-instead": basic("admin", "s3cret")})
    return ProviderCase(
        auth=token_auth_config(signer.paths["crt"]),
        valid=bearer(signer.token(everything)),
        invalid=invalid,
        challenge=f'Bearer realm="{REALM}",service="{SERVICE}"',
    )


#: One entry per auth provider plugin: ``name -> case(tmp_path)``.
PROVIDERS: dict[str, Callable[..., ProviderCase]] = {
    "htpasswd": htpasswd_case,
    "token": token_case,
}


BLOB = "{blob}"
# (method, path template): every route x method of the v2 API.  The
# placeholders are filled with real content made beforehand with valid
# credentials, so a refusal is the auth check's, not a 404.
ROUTES = [
    ("GET", "/v2/"),
    ("HEAD", "/v2/"),
    ("GET", "/v2/_catalog"),
    ("GET", "/v2/_catalog?n=1"),
    ("HEAD", "/v2/_catalog"),
    ("GET", f"/v2/{REPO}/tags/list"),
    ("GET", f"/v2/{REPO}/tags/list?n=1&last=a"),
    ("HEAD", f"/v2/{REPO}/tags/list"),
    ("GET", f"/v2/{REPO}/manifests/latest"),
    ("HEAD", f"/v2/{REPO}/manifests/latest"),
    ("GET", f"/v2/{REPO}/manifests/{{manifest}}"),
    ("PUT", f"/v2/{REPO}/manifests/latest"),
    ("PUT", f"/v2/{REPO}/manifests/{{manifest}}"),
    ("DELETE", f"/v2/{REPO}/manifests/{{manifest}}"),
    ("DELETE", f"/v2/{REPO}/manifests/latest"),
    ("GET", f"/v2/{REPO}/blobs/{BLOB}"),
    ("HEAD", f"/v2/{REPO}/blobs/{BLOB}"),
    ("DELETE", f"/v2/{REPO}/blobs/{BLOB}"),
    ("GET", f"/v2/{REPO}/referrers/{{manifest}}"),
    ("GET", f"/v2/{REPO}/referrers/{{manifest}}?artifactType=x"),
    ("HEAD", f"/v2/{REPO}/referrers/{{manifest}}"),
    ("POST", f"/v2/{REPO}/blobs/uploads/"),
    ("POST", f"/v2/{REPO}/blobs/uploads"),
    ("POST", f"/v2/{REPO}/blobs/uploads/?digest={{new_blob}}"),
    ("POST", f"/v2/{REPO}/blobs/uploads/?mount={BLOB}&from={SOURCE}"),
    ("POST", f"/v2/{REPO}/blobs/uploads/?mount={BLOB}"),
    ("GET", f"/v2/{REPO}/blobs/uploads/{{upload}}"),
    ("HEAD", f"/v2/{REPO}/blobs/uploads/{{upload}}"),
    ("PATCH", f"/v2/{REPO}/blobs/uploads/{{upload}}"),
    ("PUT", f"/v2/{REPO}/blobs/uploads/{{upload}}?digest={{new_blob}}"),
    ("DELETE", f"/v2/{REPO}/blobs/uploads/{{upload}}"),
    ("GET", "/v2/a/b/c/d/tags/list"),  # nested names
]


@pytest.fixture(params=sorted(PROVIDERS))
def setup(request, tmp_path):
    """(client, case, values for the placeholders) with content in place."""
    case = PROVIDERS[request.param](tmp_path)
    app = create_app(config={**BASE_CONFIG, **case.config, "auth": case.auth}, environ={})
    client = app.test_client()
    client.environ_base.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in case.valid.items()})
    manifest, _ = push_image(client, REPO, "latest")
    push_image(client, SOURCE, "latest", layer=b"source layer")
    blob = digest_of(b"source layer")
    resp = client.post(f"/v2/{REPO}/blobs/uploads/")
    assert resp.status_code == 202, resp.data
    upload = resp.headers["Location"].rsplit("/", 1)[1].split("?")[0]
    client.environ_base.pop("HTTP_AUTHORIZATION", None)
    for k in case.valid:
        client.environ_base.pop("HTTP_" + k.upper().replace("-", "_"), None)
    values = {"manifest": manifest, "blob": blob, "new_blob": digest_of(b"new"), "upload": upload}
    return client, case, values


def _request(client, method, template, values, headers):
    path = template.format(**values)
    body = b"new" if method in ("PUT", "PATCH", "POST") else None
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["data"] = body
        kwargs["content_type"] = OCI_MANIFEST if "/manifests/" in path else "application/octet-stream"
    return client.open(path, method=method, **kwargs)


def _assert_refused(resp, case, what):
    assert resp.status_code == 401, f"{what}: {resp.status_code} {resp.data[:300]!r}"
    assert resp.headers.get("WWW-Authenticate", "").startswith(case.challenge), what
    if resp.request.method == "HEAD":
        assert resp.data == b"", what
        return
    body = resp.get_json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], what
    for error in body["errors"]:
        assert set(error) == {"code", "message", "detail"}, what
        assert error["code"] == "UNAUTHORIZED", what


def test_table_covers_every_route_and_method():
    app = create_app(config=BASE_CONFIG, environ={})
    wanted = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("v2."):
            wanted |= {(method, rule.rule) for method in rule.methods - {"OPTIONS"}}
    adapter = app.url_map.bind("localhost")
    values = {"manifest": digest_of(b"m"), "blob": digest_of(b"b"), "new_blob": digest_of(b"n"), "upload": "u"}
    covered = set()
    for method, template in ROUTES:
        rule, _ = adapter.match(template.format(**values).split("?")[0], method=method, return_rule=True)
        covered.add((method, rule.rule))
    assert sorted(wanted - covered) == [], "routes missing from ROUTES"


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_credentials_no_access(setup, method, template):
    client, case, values = setup
    _assert_refused(_request(client, method, template, values, {}), case, f"{method} {template}")


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_bad_credentials_no_access(setup, method, template):
    client, case, values = setup
    for name, headers in case.invalid.items():
        _assert_refused(_request(client, method, template, values, headers), case, f"{name}: {method} {template}")


def test_nothing_changed_by_refused_requests(setup):
    """After every refused request above, the content is as it was."""
    client, case, values = setup
    for method, template in ROUTES:
        _request(client, method, template, values, {})
        for headers in case.invalid.values():
            _request(client, method, template, values, headers)
    ok = case.valid
    assert client.get(f"/v2/{REPO}/manifests/latest", headers=ok).status_code == 200
    assert client.get(f"/v2/{REPO}/manifests/{values['manifest']}", headers=ok).status_code == 200
    assert client.head(f"/v2/{REPO}/blobs/{values['new_blob']}", headers=ok).status_code == 404
    assert client.head(f"/v2/{REPO}/blobs/{values['blob']}", headers=ok).status_code == 404  # never mounted
    assert client.get(f"/v2/{REPO}/blobs/uploads/{values['upload']}", headers=ok).status_code == 204


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_valid_credentials_pass_the_check(setup, method, template):
    """The same requests with valid credentials are not refused: the 401s
    above come from the auth check, not from the route."""
    client, case, values = setup
    resp = _request(client, method, template, values, case.valid)
    assert resp.status_code not in (401, 403), f"{method} {template}: {resp.status_code} {resp.data[:300]!r}"
