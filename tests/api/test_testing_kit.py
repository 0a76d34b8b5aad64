"""The test kit's in-process fixtures, used as a plugin's tests use them."""

from __future__ import annotations

import pytest

from cargohold import hookimpl


class Finished:
    """Records ``cargohold_request_finished`` calls."""

    name = "finished-recorder"

    def __init__(self):
        self.calls: list[tuple] = []

    @hookimpl
    def cargohold_request_finished(self, request_info, status):
        self.calls.append((request_info["method"], request_info["endpoint"], status, request_info["bytes_in"],
                           request_info["bytes_out"]))


@pytest.fixture
def finished() -> Finished:
    return Finished()


@pytest.fixture
def cargohold_plugins(finished):
    return [finished]


@pytest.fixture
def cargohold_config(cargohold_config):
    cargohold_config["storage"]["delete"]["enabled"] = False
    return cargohold_config


def test_plugins_and_config_of_the_fixtures_make_the_app(cargohold_app, finished):
    state = cargohold_app.extensions["cargohold"]
    assert state.pm.get_plugin("finished-recorder") is finished
    assert state.config["storage"]["delete"]["enabled"] is False


def test_request_finished_sees_the_body_bytes_in_process(cargohold_registry_client, finished):
    data = b"kit" * 5000
    digest = cargohold_registry_client.push_blob("kit/app", data)
    assert cargohold_registry_client.get_blob("kit/app", digest) == data
    assert finished.calls[-2:] == [("PUT", "v2.finish_upload", 201, len(data), 0),
                                   ("GET", "v2.get_blob", 200, 0, len(data))]


def test_the_client_fixture_answers_like_a_server(cargohold_client, finished):
    resp = cargohold_client.delete("/v2/kit/app/manifests/sha256:" + "0" * 64)
    assert resp.status_code == 405 and resp.json["errors"][0]["code"] == "UNSUPPORTED"
    assert finished.calls == [("DELETE", "v2.delete_manifest", 405, 0, len(resp.data))]


def test_the_registry_client_pushes_and_pulls_an_image(cargohold_registry_client):
    image = cargohold_registry_client.push_image("kit/app", "v1", layers=3, layer_size=10_000, seed="kit")
    pulled = cargohold_registry_client.pull_image("kit/app", "v1")
    assert (pulled.digest, pulled.manifest, pulled.blobs) == (image.digest, image.manifest, image.blobs)
    assert len(image.blobs) == 4
