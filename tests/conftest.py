"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3 import (
    FaultProxy,
    empty_and_delete_bucket,
    running_moto_server,
    shared_s3_client,
    unique_bucket_name,
)

# ---------------------------------------------------------------------------------------
# S3 (moto's real HTTP server; tests pass the fake credentials from tests.support.s3
# explicitly, so no AWS_* environment variables are touched)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1, shared by the whole session."""
    with running_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> Iterator[str]:
    """A fresh, uniquely named bucket on the moto server; emptied and deleted afterwards."""
    client = shared_s3_client(moto_endpoint)
    name = unique_bucket_name()
    client.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(client, name)


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A fault-injecting HTTP proxy in front of the moto server (see FaultProxy)."""
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


pytest_plugins = ["tests.support.harness"]
