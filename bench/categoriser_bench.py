"""Triton ``categoriser`` throughput (products/s) for batch sizes 1, 32 and 256, text only
and with image embeddings, against the Triton in the current settings.

    CATSTREAM_TRITON_GRPC_URL=... CATSTREAM_MODEL_REPOSITORY=... \\
        .venv/bin/python -m bench.categoriser_bench [--seconds 20] [--json out.json]

Titles come from the retail stand-in catalogue; "with images" sends L2-normalised
1280-d embeddings with mask 1 (the categoriser's own cost; fetching and encoding
images is the image_encoder's, benchmarked separately). Each configuration runs twice:
with the outputs the stream asks for (``STREAM_OUTPUTS``) and with ``OUTPUTS``, which adds
PROBABILITIES (a float per label). Requests are sequential
(one in flight), so products/s = batch size / latency. Triton's CPU per product (its
process tree, python-backend stubs included, from /proc) is reported when Triton is the
local stack's: unlike products/s, it barely moves when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.retail_standin import make_catalogue
from bench.text_encoder_bench import local_triton_pid, process_tree_cpu_s
from catstream.settings import load_settings
from schemas.events import NormalisedProduct
from triton_models.categoriser.client import categorise
from triton_models.categoriser.contract import OUTPUTS, STREAM_OUTPUTS
from triton_models.categoriser.metadata import load_metadata
from triton_models.triton_client import TritonClient

BATCH_SIZES = (1, 32, 256)


async def measure(
    client: TritonClient,
    products: list[NormalisedProduct],
    metadata: Any,
    batch: int,
    images: bool,
    seconds: float,
    triton_pid: int | None = None,
    outputs: str = "stream",
) -> dict[str, float | str]:
    rng = np.random.default_rng(0)
    vectors = None
    if images:
        vectors = rng.normal(size=(batch, 1280)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = OUTPUTS if outputs == "all" else STREAM_OUTPUTS
    await categorise(client, products[:batch], vectors, metadata, outputs=names)  # warm-up
    done, requests, latencies = 0, 0, []
    cpu_before = process_tree_cpu_s(triton_pid) if triton_pid else 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or requests < 3:
        offset = (requests * batch) % max(1, len(products) - batch)
        t0 = time.perf_counter()
        await categorise(
            client, products[offset : offset + batch], vectors, metadata, outputs=names
        )
        latencies.append(time.perf_counter() - t0)
        done += batch
        requests += 1
    elapsed = time.perf_counter() - started
    result: dict[str, float | str] = {
        "batch": batch,
        "images": images,
        "outputs": outputs,
        "products_per_s": round(done / elapsed, 1),
        "p50_ms": round(1000 * float(np.median(latencies)), 1),
        "requests": requests,
    }
    if triton_pid:
        cpu_s = process_tree_cpu_s(triton_pid) - cpu_before
        result["triton_cpu_ms_per_product"] = round(1000 * cpu_s / done, 2)
    return result


async def main_async(seconds: float) -> list[dict[str, float | str]]:
    settings = load_settings()
    metadata = load_metadata(settings.model_repository)
    rows = make_catalogue(per_leaf=40, seed=11)
    products = [
        NormalisedProduct(product_id=str(r["product_id"]), title=str(r["title"])) for r in rows
    ]
    client = TritonClient.from_settings(settings)
    triton_pid = local_triton_pid(settings, client.url)
    results = []
    try:
        for images in (False, True):
            for batch in BATCH_SIZES:
                # Alternated in one run so the two compare on the same machine state.
                for outputs in ("stream", "all"):
                    result = await measure(
                        client, products, metadata, batch, images, seconds, triton_pid, outputs
                    )
                    print(json.dumps(result), flush=True)
                    results.append(result)
    finally:
        await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per configuration")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.seconds))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
