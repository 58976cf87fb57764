"""The real clouds' world: the caller's own AWS credentials, profile and region, as the AWS CLI takes them."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _aws_credentials() -> None:
    """Replaces the suite's fixture of that name, which swaps in moto's dummy credentials: here the
    test runs against the caller's account. AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS
    CLI (boto3 reads only the latter, and the suite's conftest defaults it to us-east-1)."""
    if os.environ.get("AWS_REGION", "").strip():
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"].strip()
