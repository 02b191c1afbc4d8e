"""The categoriser's text path on one GPU: in process, then through tritonserver.

Issue 10 asks for products/s of text per GPU with the ``gpu`` configs, and what limits it.
Run it where a CUDA GPU is (the device tool lends one; ``bench/gpu_device.sh`` is the
whole device run), with a trained categoriser version:

    python -m bench.gpu_bench inprocess --version-dir DIR --products FILE
    python -m bench.gpu_bench triton --version-dir DIR --products FILE [--instances 2,4,8]

``inprocess`` times, on ``cuda``, batch 256: MiniLM alone (tokenise + forward), and the
categoriser's ``Predictor`` (sparse features + MiniLM + network + scoring), with the
host-side share of each. ``triton`` starts tritonserver with ``--model-config-name=gpu``
once per categoriser instance count, drives it from ``--clients`` processes with
``--in-flight`` requests of ``--batch`` products each, and reports products/s, request
p50/p99, GPU utilisation (``nvidia-smi``) and server CPU seconds per product. Products
are a JSON-lines file of labelled products (``title``, ``brand``, ``description``,
``category``), e.g. the development set. Results are JSON on stdout and ``--output``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def read_products(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rows[:limit] if limit else rows


def _fields(rows: Sequence[dict[str, Any]]) -> list[Any]:
    from triton_models.categoriser.features import ProductFields

    return [
        ProductFields(
            title=str(r.get("title") or ""),
            brand=str(r.get("brand") or ""),
            raw_category=str(r.get("category") or ""),
            description=str(r.get("description") or "")[:1000],
        )
        for r in rows
    ]


def _cuda_sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rate(work: Any, batches: Sequence[Any], seconds: float) -> dict[str, float]:
    """Products/s and host CPU s per product of ``work(batch)`` looped over ``batches``."""
    work(batches[0])  # warm-up: kernels, allocator, tokenizer caches
    _cuda_sync()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            work(batch)
            done += len(batch)
    _cuda_sync()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "products_per_s": round(done / wall, 1),
        "cpu_ms_per_product": round(1000 * cpu / done, 3),
        "products": done,
    }


def inprocess(
    version_dir: Path, rows: list[dict[str, Any]], seconds: float, device: str = "cuda"
) -> dict[str, Any]:
    from triton_models.categoriser.encoder import embedding_text
    from triton_models.categoriser.serving import Predictor

    fields = _fields(rows)
    batches = [fields[i : i + BATCH] for i in range(0, len(fields) - BATCH + 1, BATCH)]
    predictor = Predictor.load(version_dir, device=device)
    encoder = predictor.encoder._model
    texts = [[embedding_text(f) for f in batch] for batch in batches]
    ids = [encoder.tokenize(batch) for batch in texts]
    tokens = [len(row) for batch in ids for row in batch]
    return {
        "encoder": getattr(encoder, "providers", []),
        "tokens_mean": round(float(np.mean(tokens)), 1),
        "tokenise": _rate(encoder.tokenize, texts, seconds / 4),
        "minilm_encode": _rate(encoder.encode, texts, seconds / 2),
        "predictor": _rate(predictor.predict, batches, seconds),
    }


# --- through tritonserver ------------------------------------------------------------------------
def _repository(work: Path, version_dir: Path, instances: int) -> Path:
    """A model repository with ``version_dir`` as categoriser version 1, ``instances`` per GPU."""
    from deploy.model_repository import sync_model_repository

    repository = work / f"repository-{instances}"
    sync_model_repository(repository)
    model = repository / "categoriser"
    shutil.copytree(version_dir, model / "1", dirs_exist_ok=True)
    config = model / "configs" / "gpu.pbtxt"
    text = config.read_text()
    config.write_text(
        text.replace("count: 2, kind: KIND_GPU", f"count: {instances}, kind: KIND_GPU")
    )
    return repository


def _start_triton(
    repository: Path, work: Path, config_name: str | None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    from deploy.services.triton import TritonService

    ports = {"http": 18000, "grpc": 18001, "metrics": 18002}
    data_dir = work / "triton-data"
    data_dir.mkdir(exist_ok=True)
    service = TritonService(repository, models=["categoriser"], config_name=config_name)
    launch = service.launch(ports, data_dir)
    log = data_dir / "triton.log"
    process = subprocess.Popen(
        launch.command,
        env=launch.env,
        cwd=launch.cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"tritonserver exited {process.returncode}; see {log}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{ports['http']}/v2/health/ready", timeout=2
            ) as r:
                if r.status == 200:
                    return process, f"127.0.0.1:{ports['grpc']}", log
        except OSError:
            pass
        time.sleep(1)
    process.kill()
    raise SystemExit(f"tritonserver not ready in 300 s; see {log}")


def _client(
    grpc_url: str, rows: list[dict[str, Any]], in_flight: int, seconds: float, queue: Any
) -> None:
    """One client process: ``in_flight`` requests of BATCH products, for ``seconds``."""
    os.environ["CATSTREAM_TRITON_GRPC_URL"] = grpc_url
    try:
        queue.put(asyncio.run(_client_loop(rows, in_flight, seconds)))
    except Exception as exc:  # reported by the parent, which would otherwise wait in vain
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


async def _client_loop(
    rows: list[dict[str, Any]], in_flight: int, seconds: float
) -> dict[str, Any]:
    from catstream.settings import get_settings
    from triton_models.categoriser.contract import OUTPUTS
    from triton_models.triton_client import TritonClient

    products = [_inputs(rows[i : i + BATCH]) for i in range(0, len(rows) - BATCH + 1, BATCH)]
    latencies: list[float] = []
    done = 0
    async with TritonClient.from_settings(get_settings()) as triton:
        await triton.infer("categoriser", products[0], OUTPUTS, model_version="1")
        stop = time.perf_counter() + seconds

        async def lane(offset: int) -> None:
            nonlocal done
            turn = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                await triton.infer(
                    "categoriser", products[turn % len(products)], OUTPUTS, model_version="1"
                )
                latencies.append(time.perf_counter() - started)
                done += BATCH
                turn += in_flight

        began = time.perf_counter()
        await asyncio.gather(*(lane(i) for i in range(in_flight)))
        wall = time.perf_counter() - began
    return {"products": done, "seconds": wall, "latencies": latencies}


def _inputs(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The categoriser's request for ``rows`` as the worker sends it: normalised, no image."""
    from training.offline import normalise_lines
    from triton_models.categoriser.contract import ImageEmbeddings, request_inputs
    from triton_models.categoriser.network import IMAGE_DIM

    products = normalise_lines(
        [(f"gpu:{i}", {"product_id": f"gpu-{i}", **row}) for i, row in enumerate(rows)]
    )
    n = len(products)
    images = ImageEmbeddings(
        np.zeros((n, IMAGE_DIM), np.float32), np.zeros((n, 1), np.float32), [False] * n
    )
    return request_inputs(products, images)


class GpuSampler(threading.Thread):
    """``nvidia-smi`` utilisation and memory every half second while the load runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.running = True

    def run(self) -> None:
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        while self.running:
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, memory = out.strip().splitlines()[0].split(",")
                self.samples.append((float(util), float(memory)))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            time.sleep(0.5)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (the python-backend stubs), from /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child], ticks[child] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, owner in parents.items():
            if owner == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


@dataclass
class TritonLoad:
    instances: int
    clients: int
    in_flight: int
    products_per_s: float
    request_p50_ms: float
    request_p99_ms: float
    gpu_util_mean: float
    gpu_memory_mib: float
    server_cpu_ms_per_product: float
    server_cores_busy: float


def load_triton(
    grpc_url: str,
    pid: int,
    rows: list[dict[str, Any]],
    clients: int,
    in_flight: int,
    seconds: float,
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    shares = [rows[i::clients] for i in range(clients)]
    processes = [
        context.Process(target=_client, args=(grpc_url, share, in_flight, seconds, queue))
        for share in shares
    ]
    sampler = GpuSampler()
    cpu = _tree_cpu(pid)
    for process in processes:
        process.start()
    time.sleep(3)  # the clients' start-up and first request stay out of the server's CPU
    cpu, began = _tree_cpu(pid), time.perf_counter()
    sampler.start()
    results = [queue.get(timeout=seconds + 300) for _ in processes]
    if failed := [r["error"] for r in results if "error" in r]:
        raise SystemExit(f"a client failed: {failed[0]}")
    cpu, wall = _tree_cpu(pid) - cpu, time.perf_counter() - began
    sampler.running = False
    for process in processes:
        process.join()
    done = sum(r["products"] for r in results)
    rate = sum(r["products"] / r["seconds"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    util = [u for u, _ in sampler.samples] or [0.0]
    memory = [m for _, m in sampler.samples] or [0.0]
    return {
        "products_per_s": round(rate, 1),
        "request_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "request_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "gpu_util_mean": round(float(np.mean(util)), 1),
        "gpu_memory_mib": max(memory),
        "server_cpu_ms_per_product": round(1000 * cpu / max(done, 1), 3),
        "server_cores_busy": round(cpu / wall, 2),
    }


def triton(
    version_dir: Path,
    rows: list[dict[str, Any]],
    instances: Sequence[int],
    clients: int,
    in_flight: int,
    seconds: float,
    config_name: str | None = "gpu",
) -> list[dict[str, Any]]:
    results = []
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    for count in instances:
        repository = _repository(work, version_dir, count)
        process, grpc_url, log = _start_triton(repository, work, config_name)
        try:
            load = load_triton(grpc_url, process.pid, rows, clients, in_flight, seconds)
            results.append(asdict(TritonLoad(count, clients, in_flight, **load)))
            print(json.dumps(results[-1]), flush=True)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if not results or results[-1]["products_per_s"] == 0:
            print(log.read_text()[-3000:], file=sys.stderr)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("part", choices=["inprocess", "triton"])
    parser.add_argument("--version-dir", type=Path, required=True)
    parser.add_argument("--products", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--instances", default="2,4,8", help="categoriser instance counts")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--device", default="cuda", help="inprocess: torch device")
    parser.add_argument(
        "--config-name", default="gpu", help="triton: model config ('' for the CPU config.pbtxt)"
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    rows = read_products(args.products)
    report: Any
    if args.part == "inprocess":
        report = inprocess(args.version_dir, rows, args.seconds, args.device)
    else:
        counts = [int(c) for c in args.instances.split(",")]
        report = triton(
            args.version_dir,
            rows,
            counts,
            args.clients,
            args.in_flight,
            args.seconds,
            args.config_name or None,
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
