"""``http.trustedproxies``: X-Forwarded-* honoured only when configured."""

from __future__ import annotations

from .conftest import BASE_CONFIG
from .helpers import digest_of

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example:8443",
             "X-Forwarded-For": "198.51.100.9"}


def test_forwarded_headers_ignored_by_default(make_app):
    client = make_app().test_client()
    resp = client.post("/v2/app/blobs/uploads/", headers=FORWARDED)
    assert resp.status_code == 202
    assert resp.headers["Location"].startswith("/v2/app/blobs/uploads/")


def test_trusted_proxy_makes_locations_point_back_through_it(make_app):
    app = make_app({**BASE_CONFIG, "http": {"trustedproxies": 1}})
    client = app.test_client()
    resp = client.post("/v2/app/blobs/uploads/", headers=FORWARDED)
    assert resp.headers["Location"].startswith("https://registry.example:8443/v2/app/blobs/uploads/")
    data = b"through the proxy"
    resp = client.post(f"/v2/app/blobs/uploads/?digest={digest_of(data)}", data=data, headers=FORWARDED)
    assert resp.headers["Location"] == f"https://registry.example:8443/v2/app/blobs/{digest_of(data)}"
    # without the headers: the request's own scheme and host
    assert client.post("/v2/app/blobs/uploads/").headers["Location"].startswith("http://localhost/v2/")


def test_trusted_proxy_sets_the_remote_address(make_app):
    from flask import request

    app = make_app({**BASE_CONFIG, "http": {"trustedproxies": 1}})
    seen = []
    app.before_request(lambda: seen.append(request.remote_addr))
    app.test_client().get("/v2/", headers=FORWARDED)
    assert seen == ["198.51.100.9"]


def test_http_host_wins(make_app):
    app = make_app({**BASE_CONFIG, "http": {"trustedproxies": 1, "host": "https://front.example"}})
    resp = app.test_client().post("/v2/app/blobs/uploads/", headers=FORWARDED)
    assert resp.headers["Location"].startswith("https://front.example/v2/app/blobs/uploads/")
