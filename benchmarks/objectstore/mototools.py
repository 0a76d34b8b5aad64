"""What the object-store benchmarks share: a moto server of their own and a
boto3 client for filling its buckets directly."""

from __future__ import annotations

import sys
import uuid

import boto3
from botocore.config import Config

from cargohold.testing.services import ServiceProcess

ACCESS_KEY, SECRET_KEY, REGION = "bench", "bench-secret", "us-east-1"


def start_moto() -> ServiceProcess:
    """``python -m moto.server`` on a free loopback port (stop it by PID
    with ``stop()`` and ``cleanup()``)."""
    return ServiceProcess("moto", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                "-p", str(port)]).start()


def client_and_bucket(moto: ServiceProcess, prefix: str):
    """A boto3 client for 32 parallel puts, and a new bucket's name."""
    s3 = boto3.client("s3", endpoint_url=f"http://{moto.address}", region_name=REGION,
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket
