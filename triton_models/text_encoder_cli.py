"""``catstream embed "sentence" ...``: embed sentences through the Triton text encoder.

Prints, per sentence, the embedding dimension, its L2 norm (1.0: normalised) and
its first values, then the round-trip time. Exit status 1 when Triton cannot be
reached or rejects the input, with a message saying what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import numpy.typing as npt

from catstream.settings import Settings
from triton_models.triton_client import TritonClient, TritonError


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="+", help="sentences to embed (quote each one)")
    parser.add_argument(
        "--url", help="Triton gRPC address (default: settings.triton_grpc_url / stack.env)"
    )
    parser.add_argument("--values", type=int, default=5, help="leading values to print")
    parser.set_defaults(handler=run)


async def _embed(client: TritonClient, sentences: list[str]) -> npt.NDArray[np.float32]:
    try:
        return await client.embed_texts(sentences)
    finally:
        await client.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    client = TritonClient.from_settings(settings)
    if args.url:
        client.url = args.url
    started = time.perf_counter()
    try:
        embeddings = asyncio.run(_embed(client, args.sentences))
    except TritonError as exc:
        print(f"catstream embed: {exc}", file=sys.stderr)
        return 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    for sentence, vector in zip(args.sentences, embeddings, strict=True):
        head = ", ".join(f"{value:+.4f}" for value in vector[: args.values])
        print(f"{sentence[:60]!r}")
        print(f"  dim={vector.shape[0]} norm={np.linalg.norm(vector):.4f} first=[{head}, ...]")
    print(
        f"{len(args.sentences)} sentence(s) embedded by {client.text_encoder_model!r} "
        f"at {client.url} in {elapsed_ms:.1f} ms"
    )
    return 0
