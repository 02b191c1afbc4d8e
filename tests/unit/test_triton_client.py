"""The Triton client's pure logic: backoff policy, error classification, retry accounting."""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from catstream.metrics import REGISTRY
from catstream.settings import load_settings
from triton_models.triton_client import (
    RetryPolicy,
    TritonClient,
    TritonRequestInvalid,
    TritonServerError,
    TritonUnavailable,
    classify,
)


def test_delay_is_between_half_and_full_backoff() -> None:
    policy = RetryPolicy(retries=5, base_delay_s=0.1, max_delay_s=100.0)
    rng = random.Random(7)
    for retry in range(6):
        full = 0.1 * 2**retry
        for _ in range(50):
            delay = policy.delay_s(retry, rng)
            assert full / 2 <= delay <= full


def test_delay_is_capped() -> None:
    policy = RetryPolicy(retries=20, base_delay_s=0.1, max_delay_s=2.0)
    rng = random.Random(1)
    delays = [policy.delay_s(retry, rng) for retry in range(20)]
    assert max(delays) <= 2.0
    assert min(delays[10:]) >= 1.0


def test_delays_are_jittered() -> None:
    policy = RetryPolicy()
    rng = random.Random(3)
    delays = {round(policy.delay_s(2, rng), 6) for _ in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.UNAVAILABLE", TritonUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", TritonUnavailable),
        ("StatusCode.RESOURCE_EXHAUSTED", TritonUnavailable),
        ("StatusCode.INVALID_ARGUMENT", TritonRequestInvalid),
        ("StatusCode.NOT_FOUND", TritonServerError),
        ("StatusCode.INTERNAL", TritonServerError),
    ],
)
def test_grpc_status_maps_to_error_class(status: str, expected: type[Exception]) -> None:
    assert expected is classify(InferenceServerException("boom", status=status))


def test_socket_errors_are_retryable() -> None:
    assert TritonUnavailable is classify(ConnectionRefusedError("refused"))
    assert TritonUnavailable is classify(TimeoutError())


def test_from_settings_reads_url_timeout_and_retries() -> None:
    settings = load_settings(
        triton_grpc_url="triton.prod:8001", triton_timeout_s=3.5, triton_retries=2
    )
    client = TritonClient.from_settings(settings)
    assert (client.url, client.timeout_s, client.policy.retries) == ("triton.prod:8001", 3.5, 2)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_server_is_retried_then_unavailable() -> None:
    """Every attempt against a closed port fails; the error comes after retries + 1 tries."""
    url = f"127.0.0.1:{_closed_port()}"
    policy = RetryPolicy(retries=2, base_delay_s=0.01, max_delay_s=0.02)
    client = TritonClient(url, timeout_s=2.0, policy=policy)
    model = f"unit_unreachable_{_closed_port()}"
    rows = np.array([[b"red shoes"]], dtype=np.object_)
    try:
        with pytest.raises(TritonUnavailable, match="after 3 attempts"):
            await client.infer(model, {"TEXT": rows}, ["EMBEDDING"])
        assert await client.is_ready() is False
    finally:
        await client.close()
    assert REGISTRY.get_sample_value("catstream_triton_errors_total", {"model": model}) == 3.0


async def test_embedding_nothing_needs_no_server() -> None:
    client = TritonClient(f"127.0.0.1:{_closed_port()}", timeout_s=0.5, retries=0)
    assert (await client.embed_texts([])).shape == (0, 384)
    await client.close()
