"""Image encoder throughput: torch vs ONNX Runtime in-process, and Triton (gRPC).

    .venv/bin/python bench/image_encoder_bench.py [--url HOST:PORT] [--batch-sizes 1,32,64]

Every backend embeds the same generated product photos (800×800 JPEGs, q85,
about the size shops serve) from their encoded bytes, so decoding and resizing
are included: that is the work the stream pays per image. Client-side batches
of each size, one batch in flight at a time, after a warm-up; Triton batch 1 is
also run with several requests in flight (``--concurrency``), which is how the
stream calls it and what the dynamic batcher is for. In-process backends get
``--threads`` intra-op threads, like the Triton CPU config (``intra_op_threads``
2). Prints a table and writes JSON (``--out``). The Triton URL defaults to
settings (``.catstream/stack.env``): start the stack with ``catstream stack up``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from catstream.settings import load_settings
from triton_models.image_encoder import ImageEncoder
from triton_models.image_encoder.export import export_onnx
from triton_models.triton_client import TritonClient


def product_photos(count: int, size: int = 800, seed: int = 7) -> list[bytes]:
    """``count`` JPEG product-style photos: an object on a light, slightly noisy backdrop."""
    rng = np.random.default_rng(seed)
    photos = []
    for index in range(count):
        backdrop = rng.integers(225, 255, size=3)
        noise = rng.normal(0, 6, size=(size, size, 3))
        pixels = np.clip(backdrop + noise, 0, 255).astype(np.uint8)
        picture = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(picture)
        colour = tuple(int(c) for c in rng.integers(0, 200, size=3))
        left, top = rng.integers(80, 250, size=2)
        right, bottom = size - rng.integers(80, 250, size=2)
        shape = draw.ellipse if index % 2 else draw.rounded_rectangle
        shape((int(left), int(top), int(right), int(bottom)), fill=colour)
        picture = picture.filter(ImageFilter.GaussianBlur(1.5))
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=85)
        photos.append(buffer.getvalue())
    return photos


@dataclass(frozen=True)
class Result:
    backend: str
    batch_size: int
    in_flight: int
    images: int
    seconds: float
    images_per_s: float
    batch_ms_p50: float
    batch_ms_p95: float


def _chunks(items: Sequence[bytes], size: int) -> list[Sequence[bytes]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _result(
    backend: str, size: int, in_flight: int, images: int, wall: float, latencies: list[float]
) -> Result:
    ordered = sorted(latencies)
    result = Result(
        backend=backend,
        batch_size=size,
        in_flight=in_flight,
        images=images,
        seconds=round(wall, 3),
        images_per_s=round(images / wall, 1),
        batch_ms_p50=round(statistics.median(ordered) * 1000, 2),
        batch_ms_p95=round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
    )
    # Progress as we go: a busy machine can make the whole run take minutes.
    print(
        f"  {backend} batch={size} in_flight={in_flight}: {result.images_per_s} images/s",
        flush=True,
    )
    return result


def bench_in_process(
    name: str, encode: Callable[[list[bytes]], object], photos: list[bytes], size: int
) -> Result:
    encode(list(photos[:size]))  # warm-up
    latencies = []
    started_all = time.perf_counter()
    for chunk in _chunks(photos, size):
        started = time.perf_counter()
        encode(list(chunk))
        latencies.append(time.perf_counter() - started)
    return _result(name, size, 1, len(photos), time.perf_counter() - started_all, latencies)


async def bench_triton(
    client: TritonClient, model: str, photos: list[bytes], size: int, in_flight: int
) -> Result:
    async def call(chunk: Sequence[bytes]) -> float:
        rows = np.array([[image] for image in chunk], dtype=np.object_)
        started = time.perf_counter()
        answer = await client.infer(model, {"IMAGE": rows}, ["EMBEDDING", "OK"])
        if not answer["OK"].all():
            raise SystemExit("Triton could not decode a benchmark image; check the server log")
        return time.perf_counter() - started

    await call(photos[:size])  # warm-up: connection, shared memory, ONNX Runtime arenas
    chunks = _chunks(photos, size)
    gate = asyncio.Semaphore(in_flight)

    async def gated(chunk: Sequence[bytes]) -> float:
        async with gate:
            return await call(chunk)

    started = time.perf_counter()
    latencies = list(await asyncio.gather(*(gated(chunk) for chunk in chunks)))
    wall = time.perf_counter() - started
    return _result("triton", size, in_flight, len(photos), wall, latencies)


async def run_triton(
    url: str, model: str, photos: list[bytes], sizes: list[int], concurrency: int
) -> list[Result]:
    async with TritonClient(url, timeout_s=300.0, retries=2) as client:
        if not await client.is_ready(model):
            raise SystemExit(
                f"Triton at {url} has no ready {model}; run `catstream stack up` "
                "or pass --url HOST:GRPC_PORT"
            )
        results = [await bench_triton(client, model, photos, size, 1) for size in sizes]
        if concurrency > 1:
            results.append(await bench_triton(client, model, photos, 1, concurrency))
        return results


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':<14} {'batch':>5} {'in flight':>9} {'images/s':>9} "
        f"{'p50 ms/batch':>13} {'p95':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<14} {r.batch_size:>5} {r.in_flight:>9} {r.images_per_s:>9.1f} "
            f"{r.batch_ms_p50:>13.2f} {r.batch_ms_p95:>9.2f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="Triton gRPC address (default: settings.triton_grpc_url)")
    parser.add_argument("--batch-sizes", default="1,32,64", help="comma-separated batch sizes")
    parser.add_argument("--images", type=int, default=64, help="photos per batch size")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads in-process")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="Triton batch-1 requests in flight"
    )
    parser.add_argument("--skip-triton", action="store_true", help="in-process backends only")
    parser.add_argument("--out", type=Path, help="JSON output (default: <home>/bench/...json)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    settings = load_settings()
    url = args.url or settings.triton_grpc_url
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    photos = product_photos(args.images)

    results: list[Result] = []
    if not args.skip_triton:
        results += asyncio.run(
            run_triton(url, settings.image_encoder_model, photos, sizes, args.concurrency)
        )
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = export_onnx(Path(scratch) / "model.onnx")
        onnx_encoder = ImageEncoder("onnx", onnx_path=onnx_path, num_threads=args.threads)
        results += [bench_in_process("onnx", onnx_encoder.encode_bytes, photos, s) for s in sizes]
    torch_encoder = ImageEncoder("torch", num_threads=args.threads)
    results += [bench_in_process("torch", torch_encoder.encode_bytes, photos, s) for s in sizes]
    results.sort(key=lambda r: (r.batch_size, r.backend, r.in_flight))

    print_table(results)
    out = args.out or settings.home / "bench" / "image_encoder_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "triton_url": None if args.skip_triton else url,
        "images": len(photos),
        "image_bytes_mean": int(np.mean([len(photo) for photo in photos])),
        "in_process_threads": args.threads,
        "machine": {"platform": platform.platform()},
        "results": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
