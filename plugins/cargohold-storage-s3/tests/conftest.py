"""A real S3 endpoint for the tests: moto's standalone server
(``python -m moto.server``) as a separate process on a free loopback port,
spoken to over HTTP.  Missing moto fails the tests (never skips them)."""

from __future__ import annotations

import importlib.util
import sys
import uuid

import boto3
import pytest
from botocore.config import Config

from cargohold.testing.services import ServiceProcess
from cargohold_storage_s3 import S3Driver, parse_settings

ACCESS_KEY = "cargohold-test"
SECRET_KEY = "cargohold-test-secret"
REGION = "us-east-1"
MiB = 1 << 20


class MotoServer(ServiceProcess):
    """``python -m moto.server`` on ``127.0.0.1:<port>``.  ``stop`` ends it
    (by PID) and ``start`` brings it back on the same port; moto keeps
    nothing across restarts, so ``start`` recreates the buckets made
    through :meth:`create_bucket`."""

    def __init__(self):
        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask_cors") is None:
            pytest.fail("moto's standalone server is not installed; install with: pip install 'moto[server]'",
                        pytrace=False)
        super().__init__("moto", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                               "-p", str(port)])
        self.endpoint = f"http://{self.address}"
        self.buckets: list[str] = []

    def start(self) -> "MotoServer":
        super().start()
        for bucket in self.buckets:
            self.client().create_bucket(Bucket=bucket)
        return self

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def params(self, bucket: str, **overrides) -> dict:
        """A ``storage.s3`` section pointing at this server."""
        return {"bucket": bucket, "regionendpoint": self.endpoint, "region": REGION,
                "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "forcepathstyle": True, **overrides}

    def registry_env(self, bucket: str, **overrides) -> dict[str, str]:
        """The same as ``CARGOHOLD_*`` overrides for a ``cargohold serve``."""
        env = {"CARGOHOLD_STORAGE": "s3"}
        for key, value in self.params(bucket, **overrides).items():
            env[f"CARGOHOLD_STORAGE_S3_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env


class MotoBackend:
    """What :class:`cargohold.testing.backends.StorageBackendSuite` drives: a
    moto server of its own (the suite stops and restarts it), one bucket,
    and ``CARGOHOLD_*`` settings for registries on it."""

    def __init__(self, server: MotoServer):
        self.server = server
        self.bucket = server.create_bucket()
        # Small parts, so a few MiB exercise multipart uploads and copies, and
        # short timeouts and few retries, so an outage is a 503 within seconds.
        self.settings = dict(rootdirectory=f"/e2e-{uuid.uuid4().hex[:8]}", chunksize="5MiB",
                             multipartcopychunksize="5MiB", multipartcopythresholdsize="5MiB",
                             connecttimeout="2s", readtimeout="10s", maxretries=1)
        self.env = server.registry_env(self.bucket, **self.settings)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def make_driver(self) -> S3Driver:
        return S3Driver(parse_settings(self.server.params(self.bucket, **self.settings)))


@pytest.fixture(scope="class")
def moto_backend():
    with MotoServer() as server:
        yield MotoBackend(server)


@pytest.fixture(scope="session")
def moto_server():
    with MotoServer() as server:
        yield server


@pytest.fixture
def bucket_backend(moto_server) -> MotoBackend:
    """A :class:`MotoBackend` on a bucket of its own, on the session's server."""
    return MotoBackend(moto_server)


@pytest.fixture(scope="session")
def bucket(moto_server) -> str:
    return moto_server.create_bucket()


@pytest.fixture
def make_driver(moto_server, bucket):
    """``make_driver(**settings)``: drivers over a fresh root directory of
    the session's bucket (small part sizes, so multipart paths run on a few
    MiB); all closed at the end of the test."""
    root = f"/t/{uuid.uuid4().hex}"
    drivers = []

    def make(**overrides) -> S3Driver:
        params = moto_server.params(bucket, rootdirectory=root, chunksize="5MiB",
                                    multipartcopychunksize="5MiB", multipartcopythresholdsize="5MiB")
        params.update(overrides)
        driver = S3Driver(parse_settings(params))
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.close()
