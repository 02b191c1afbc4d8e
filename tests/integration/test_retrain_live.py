"""The labelling loop live, on the real stack: label in the review app over HTTP, run
``catstream retrain`` (promoting, loading into Triton with explicit model control),
and see the served version change for the stream without restarting the worker.

The labels live in a taxonomy of this test run's own (the stand-in retail tree with
its top levels renamed uniquely), so whatever another test (or an earlier run of this
one) left served scores nothing on this holdout and the promotion does not depend on
test order. When nothing is served yet, a weak champion is trained first, so there is
always a version to change from. The worker looks for a new version every second
(``CATSTREAM_MODEL_REFRESH_S``; 30 s by default).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.retail_standin import TAXONOMY, make_catalogue, write_jsonl
from catstream.cli import main
from catstream.settings import Settings, get_settings
from catstream.taxonomy import Taxonomy
from schemas.events import CategoryScore, ModelDecision, Prediction, ReviewItem, now_ms
from streams.review_cli import read_topic as read_values
from streams.topic_records import publish_json
from streams.topics import create_topics
from tests.integration.review_app_fixtures import page_shows, publish_items
from tests.integration.running_worker import WorkerProcess, read_topic
from triton_models.categoriser.metadata import ModelVersionError, served_version, version_dirs
from triton_models.categoriser.model_control import triton_model_state
from workers.api import build_api
from workers.review_app import REVIEW

RENAMED = {"Fashion": "Fashion", "Electronics": "Electronics", "Home & Kitchen": "Home"}
# Unique per test session: not even this test's own earlier runs know the tree.
TREE = f"Live {uuid.uuid4().hex[:6]}"
HOLDOUT = 12
CARD = re.compile(r'id="card" data-product-id="([^"]*)"')


def renamed(path: str) -> str:
    top, _, rest = path.partition(" > ")
    return f"{TREE} {RENAMED[top]} > {rest}"


def catalogue(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    taxonomy = tmp_path / "taxonomy.txt"
    taxonomy.write_text("".join(renamed(line) + "\n" for line in TAXONOMY.splitlines()))
    rows = [
        {**row, "product_id": f"live-{i}", "category": renamed(str(row["category"]))}
        for i, row in enumerate(make_catalogue(per_leaf=5, seed=7))
    ]
    return taxonomy, rows


def items_for(rows: list[dict[str, Any]], tree: Taxonomy) -> list[ReviewItem]:
    """What the router would send: uncertain items with the tree's first leaves as candidates,
    the newest ``HOLDOUT`` of them random samples (the retrain holdout)."""
    leaves = [tree.resolve(renamed(line)) for line in TAXONOMY.splitlines()[:5]]
    candidates = [
        CategoryScore(id=leaf, path=tree.path_str(leaf), score=0.2, level=tree.level(leaf))
        for leaf in leaves
    ]
    start = now_ms() - len(rows)
    return [
        ReviewItem(
            product_id=str(row["product_id"]),
            uncertainty=0.5 + 0.4 * ((i * 7) % 10) / 10,
            measure="margin",
            candidates=candidates,
            model_version="0",
            fingerprint=f"fp-{row['product_id']}",
            title=str(row["title"]),
            brand=row.get("brand"),
            created_at=start + i,
            random_sample=i >= len(rows) - HOLDOUT,
        )
        for i, row in enumerate(rows)
    ]


async def label_everything(client: TestClient[Any, Any], truth: dict[str, str]) -> list[str]:
    """Take the next item /review hands out and answer it, until none is left; the ids in
    the order they were handed out."""
    answered: list[str] = []
    for _ in range(len(truth) + 10):  # each answer removes one item
        page = await client.get("/review")
        assert page.status == 200, await page.text()
        match = CARD.search(await page.text())
        assert match is not None
        product_id = match.group(1)
        if not product_id:
            break
        # The worker's own review items (its test products) are answered "can't tell".
        answer = (
            {"category": truth[product_id]} if product_id in truth else {"verdict": "cant_tell"}
        )
        response = await client.post(
            "/review/answer", data={"product_id": product_id, **answer}, allow_redirects=False
        )
        assert response.status == 303, await response.text()
        answered.append(product_id)
    assert set(truth) <= set(answered), f"labelled {len(answered)} items, not all of {len(truth)}"
    return answered


async def all_queued(client: TestClient[Any, Any], app: Any, wanted: set[str]) -> None:
    state = app[REVIEW].state
    for _ in range(600):  # condition polling, bounded: the feed reads Kafka in a thread
        if wanted <= set(state.items):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the review app read {len(wanted & set(state.items))} of the items")


async def dashboard_serves(client: TestClient[Any, Any], version: int) -> None:
    served = f'<span class="big" id="served">v{version}</span>'
    await page_shows(client, "/review/dashboard", served, f"v{version} served")


def prediction_of(settings: Settings, product_id: str) -> Prediction | None:
    for record in read_topic(settings, "predictions", idle_s=1):
        if record.key == product_id and record.value is not None:
            return Prediction.model_validate(record.value)
    return None


async def predicted(settings: Settings, worker: WorkerProcess, product_id: str) -> Prediction:
    await asyncio.to_thread(
        publish_json, settings, [(product_id, {"product_id": product_id, "title": "Slim Jeans"})]
    )
    for _ in range(600):  # condition polling, bounded (the worker may still be starting)
        found = await asyncio.to_thread(prediction_of, settings, product_id)
        if found is not None:
            return found
        assert worker.alive(), "the worker died:\n" + worker.log_tail()
        await asyncio.sleep(0.5)
    raise AssertionError(f"no prediction for {product_id}:\n{worker.log_tail()}")


@pytest.fixture
async def live(
    topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    taxonomy, _ = catalogue(tmp_path)
    settings = topic_settings.model_copy(
        update={
            "home": tmp_path,
            "taxonomy_path": taxonomy,
            "review_lease_db": tmp_path / "leases.sqlite",
            "retrain_min_holdout": HOLDOUT,
            "retrain_margin": 0.0,
            "model_refresh_s": 1.0,
        }
    )
    await asyncio.to_thread(create_topics, settings)
    # `catstream` commands read their settings from the environment, as a person's would.
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield settings
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_retrain_promotes_live_and_the_stream_serves_the_new_version(
    live: Settings, tmp_path: Path
) -> None:
    settings = live
    repository = settings.model_repository
    taxonomy, rows = catalogue(tmp_path)
    tree = Taxonomy.load(taxonomy)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "--agents", "normalise,infer")
    worker.start()  # starts while the champion is found or trained
    try:
        try:
            champion = served_version(repository)
        except ModelVersionError:
            write_jsonl(tmp_path / "weak.jsonl", rows[:10])
            argv = ["train", "--labels", str(tmp_path / "weak.jsonl"), "--quiet"]
            assert await asyncio.to_thread(main, [*argv, "--taxonomy", str(taxonomy)]) == 0
            champion = served_version(repository)
        await asyncio.to_thread(publish_items, settings, items_for(rows, tree))
        before = await predicted(settings, worker, "live-before")
        assert before.model_version == str(champion)

        truth = {str(r["product_id"]): str(r["category"]) for r in rows}
        app = build_api(settings)
        async with TestClient(TestServer(app)) as client:
            named = await client.post("/review/name", data={"labeller": "ann"})
            assert named.status == 200
            await all_queued(client, app, set(truth))  # the feed thread has read them
            answered = await label_everything(client, truth)
            # the random samples (the holdout) first, until retrain has enough to decide
            # (oldest first would hand out every other item before them)
            samples = [str(r["product_id"]) for r in rows[-HOLDOUT:]]
            assert answered[:HOLDOUT] == samples

            retrain = ["retrain", "--taxonomy", str(taxonomy)]  # no --no-load: Triton loads it
            assert await asyncio.to_thread(main, retrain) == 0
            challenger = max(version_dirs(repository))
            assert challenger > champion
            values = read_values(settings, "models")
            decisions = [ModelDecision.model_validate_json(v) for v in values]
            assert [d.decision for d in decisions] == ["promoted"], decisions
            assert decisions[0].champion_version == champion
            assert decisions[0].challenger_version == decisions[0].served_version == challenger
            assert decisions[0].holdout_size == HOLDOUT
            assert served_version(repository) == challenger
            assert triton_model_state(settings).get(challenger) == "READY"

            # The same worker, never restarted, now predicts with the promoted version.
            after = await predicted(settings, worker, "live-after")
            assert after.model_version == str(challenger), worker.log_tail()
            assert after.top_category is not None
            assert tree.path_str(after.top_category.id).startswith(TREE)
            # and the dashboard says so (it reads the served version off the predictions)
            await dashboard_serves(client, challenger)
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
