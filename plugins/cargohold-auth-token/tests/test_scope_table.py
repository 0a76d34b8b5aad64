"""Every route of the v2 API, taken from the app's URL map, enforces the
token's scope: a valid token for another repository, or one lacking an
action the route needs, gets 401 with ``error="insufficient_scope"`` and the
scope the route needs."""

from __future__ import annotations

import re

import pytest

from cargohold.app import create_app
from cargohold_auth_token.testing import bearer

REPO = "private/app"
DIGEST = "sha256:" + "a" * 64
ARGS = {"name": REPO, "digest": DIGEST, "reference": "v1", "upload_id": "0d0a7a43-5e8c-4a4e-9e1c-6a6e1d1b7c5e"}
NEEDS = {"GET": "pull", "HEAD": "pull", "POST": "pull,push", "PUT": "pull,push", "PATCH": "pull,push",
         "DELETE": "delete"}


def _routes():
    app = create_app(config={"storage": {"inmemory": {}}}, environ={})
    adapter = app.url_map.bind("localhost")
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("v2.") or rule.rule == "/v2/":
            continue
        path = adapter.build(rule.endpoint, {k: v for k, v in ARGS.items() if k in rule.arguments})
        for method in sorted(rule.methods - {"OPTIONS"}):
            routes.append((method, path))
    app.cargohold_shutdown()
    return sorted(set(routes))


ROUTES = _routes()


def _scope(method: str, path: str) -> str:
    return "registry:catalog:*" if path.startswith("/v2/_catalog") else f"repository:{REPO}:{NEEDS[method]}"


def test_table_is_not_empty():
    assert len(ROUTES) >= 15 and ("GET", "/v2/_catalog") in ROUTES


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_token_for_another_repository_is_refused(registry, signer, method, path):
    token = signer.token([("repository", "other/app", ["*"]), ("repository", f"{REPO}x", ["*"])])
    resp = registry.open(path, method=method, headers=bearer(token), data=b"x" if method in ("PUT", "PATCH", "POST") else None)
    assert resp.status_code == 401
    params = dict(re.findall(r'(\w+)="([^"]*)"', resp.headers["WWW-Authenticate"]))
    assert params["error"] == "insufficient_scope" and params["scope"] == _scope(method, path)


@pytest.mark.parametrize("method,path", [r for r in ROUTES if r[0] not in ("GET", "HEAD")],
                         ids=[f"{m} {p}" for m, p in ROUTES if m not in ("GET", "HEAD")])
def test_token_missing_an_action_is_refused(registry, signer, method, path):
    # pull only for writes; pull and push (but not delete) for deletes.
    actions = ["pull"] if method != "DELETE" else ["pull", "push"]
    token = signer.token([("repository", REPO, actions)])
    resp = registry.open(path, method=method, headers=bearer(token), data=b"x" if method != "DELETE" else None)
    assert resp.status_code == 401
    params = dict(re.findall(r'(\w+)="([^"]*)"', resp.headers["WWW-Authenticate"]))
    assert params["error"] == "insufficient_scope" and params["scope"] == _scope(method, path)
