"""request_parts(): the current request's app, environ and g, cheaply."""

import flask
import pytest

from cargohold import request_context


@pytest.fixture
def app():
    return flask.Flask("request-parts")


def test_request_parts_are_the_objects_behind_the_proxies(app):
    with app.test_request_context("/v2/", headers={"User-Agent": "probe"}):
        flask.g.grant = "the grant"
        got_app, environ, app_g = request_context.request_parts()
        assert got_app is app
        assert environ is flask.request.environ and environ["HTTP_USER_AGENT"] == "probe"
        assert app_g is flask.g._get_current_object() and app_g.get("grant") == "the grant"


def test_request_parts_fall_back_to_the_proxies(app, monkeypatch):
    monkeypatch.setattr(request_context, "_cv_request", None)
    with app.test_request_context("/v2/"):
        got_app, environ, app_g = request_context.request_parts()
        assert got_app is app and environ is flask.request.environ and app_g is flask.g._get_current_object()


def test_request_parts_of_two_requests_do_not_mix(app):
    with app.test_request_context("/first"):
        outer = request_context.request_parts()[1]
        with app.test_request_context("/second"):
            assert request_context.request_parts()[1]["PATH_INFO"] == "/second"
        assert request_context.request_parts()[1] is outer and outer["PATH_INFO"] == "/first"
