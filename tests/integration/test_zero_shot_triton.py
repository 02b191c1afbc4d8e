"""The zero-shot categoriser over the whole Google taxonomy, on the real local Triton.

`catstream train --zero-shot` (no labels) exports a version over all 5,582
categories and Triton loads it; the categoriser's python-backend stub stays
under 2 GiB resident; products the model never saw get a sensible category or
no category (review), never a wrong branch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from catstream.cli import main
from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas.events import NormalisedProduct
from triton_models.categoriser.client import categorise
from triton_models.categoriser.metadata import load_metadata, served_version, version_taxonomy
from triton_models.triton_client import TritonClient

STUB_RSS_LIMIT = 2 * 1024**3
# title → the top-level branch a sensible answer lies in
OUTSIDE = {
    "Apple iPhone 13 Pro Max 256GB smartphone, Sierra Blue": "Electronics",
    "LEGO City Police Station 60316 building set": "Toys & Games",
    "Hozelock 30 m garden hose with spray gun": "Home & Garden",
}


def stub_rss_bytes(model_repository: Path, version: int) -> int:
    """Resident memory of the python-backend stub serving ``categoriser/<version>``."""
    wanted = str(model_repository.resolve() / "categoriser" / str(version) / "model.py")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"triton_python_backend_stub"):
            continue
        if len(argv) > 1 and argv[1].decode(errors="replace") == wanted:
            rss_kib = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            found.append(rss_kib * 1024)
    assert found, f"no python-backend stub runs {wanted}"
    return max(found)


@pytest.fixture(scope="module")
def zero_shot(stack: Settings) -> int:
    assert main(["train", "--zero-shot", "--quiet"]) == 0
    version = served_version(stack.model_repository)
    return version


def test_zero_shot_serves_the_whole_google_taxonomy_under_2_gib(
    stack: Settings, zero_shot: int
) -> None:
    metadata = load_metadata(stack.model_repository, zero_shot)
    google = load_taxonomy(stack.taxonomy_path)
    assert metadata.raw["kind"] == "zero_shot"
    assert len(metadata.space) == len(google) == 5582
    assert version_taxonomy(stack.model_repository, metadata).hash == google.hash
    rss = stub_rss_bytes(stack.model_repository, zero_shot)
    print(f"categoriser stub RSS, zero-shot over {len(google)} categories: {rss / 2**20:.0f} MiB")
    assert rss < STUB_RSS_LIMIT


def test_products_from_outside_any_feed_get_a_sensible_category_or_review(
    stack: Settings, zero_shot: int
) -> None:
    metadata = load_metadata(stack.model_repository, zero_shot)
    taxonomy = version_taxonomy(stack.model_repository, metadata)
    products = [
        NormalisedProduct(product_id=f"outside-{i}", title=title) for i, title in enumerate(OUTSIDE)
    ]

    async def through_triton() -> list[int | None]:
        client = TritonClient.from_settings(stack)
        try:
            outputs = await categorise(client, products, None, metadata)
        finally:
            await client.close()
        return [o.predicted_id for o in outputs]

    predicted = asyncio.run(through_triton())
    for (title, branch), category in zip(OUTSIDE.items(), predicted, strict=True):
        answer = "review" if category is None else taxonomy.path_str(category)
        print(f"{title!r} -> {answer}")
        if category is not None:
            assert taxonomy.path(category)[0] == branch, (title, answer)
