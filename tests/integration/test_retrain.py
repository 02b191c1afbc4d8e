"""``catstream retrain`` on the real Kafka: promote on labels that help, keep the champion on
labels that hurt (shuffled categories), with the decision recorded everywhere.

The model repository is this test's own copy, and promotion writes the version
policy without asking Triton to load (``--no-load``: loading MiniLM per version
takes minutes on a busy 2-core host); the load itself is ``catstream model load``'s
``load_versions``, covered by ``test_categoriser_triton``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from confluent_kafka import Producer

from bench.retail_standin import TAXONOMY, make_catalogue, write_jsonl
from catstream.cli import main
from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings, get_settings
from deploy.model_repository import sync_model_repository
from schemas.events import Label, ModelDecision
from streams.review_cli import read_topic
from streams.topics import create_topics
from triton_models.categoriser.metadata import model_dir, served_version, version_dirs
from triton_models.categoriser.model_control import rollback_versions


def publish_labels(settings: Settings, rows: list[dict[str, object]], *, holdout: bool) -> None:
    producer = Producer(librdkafka_config(settings))
    for row in rows:
        label = Label(
            product_id=str(row["product_id"]),
            category=str(row["category"]),
            labeller="test",
            title=str(row["title"]),
            random_sample=holdout,
        )
        producer.produce(
            settings.topic("labels"), key=label.product_id.encode(), value=label.model_dump_json()
        )
    assert producer.flush(30) == 0


def test_retrain_promotes_a_better_challenger_and_keeps_the_champion_otherwise(
    topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = sync_model_repository(tmp_path / "model-repository")
    settings = topic_settings.model_copy(
        update={
            "model_repository": repository,
            "home": tmp_path,
            "retrain_margin": 0.02,
            "retrain_min_holdout": 20,
        }
    )
    create_topics(settings)
    taxonomy = tmp_path / "taxonomy.txt"
    taxonomy.write_text(TAXONOMY)
    rows = make_catalogue(per_leaf=10, seed=5)
    random.Random(0).shuffle(rows)
    weak, good, holdout = rows[:12], rows[12:150], rows[150:]
    write_jsonl(tmp_path / "weak.jsonl", weak)
    # `catstream` commands read their settings from the environment, as a person's would.
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        # The champion: trained on a dozen labels.
        common = ["--taxonomy", str(taxonomy), "--quiet"]
        assert main(["train", "--labels", str(tmp_path / "weak.jsonl"), "--no-load", *common]) == 0
        champion = max(version_dirs(repository))
        publish_labels(settings, holdout, holdout=True)
        publish_labels(settings, good, holdout=False)

        retrain = ["retrain", "--taxonomy", str(taxonomy), "--no-load"]
        assert main(retrain) == 0
        promoted = max(version_dirs(repository))
        assert promoted > champion
        assert served_version(repository) == promoted

        # Shuffled categories: the latest label of every training product is now wrong.
        categories = [str(r["category"]) for r in good]
        random.Random(1).shuffle(categories)
        publish_labels(
            settings,
            [{**r, "category": c} for r, c in zip(good, categories, strict=True)],
            holdout=False,
        )
        assert main(retrain) == 0
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert served_version(repository) == promoted  # the champion stayed
    assert max(version_dirs(repository)) == promoted  # the loser is out of the versions
    rejected = list((model_dir(repository) / "rejected").iterdir())
    assert len(rejected) == 1
    decisions = [ModelDecision.model_validate_json(v) for v in read_topic(settings, "models")]
    assert [d.decision for d in decisions] == ["promoted", "kept_champion"]
    first, second = decisions
    assert first.champion_version == champion
    assert first.challenger_version == promoted
    assert first.champion_score is not None
    assert first.challenger_score > first.champion_score + 0.02
    assert second.champion_version == promoted
    assert second.champion_score is not None
    assert second.challenger_score <= second.champion_score + 0.02
    assert first.holdout_size == second.holdout_size == len(holdout)
    metadata = json.loads((model_dir(repository) / str(promoted) / "metadata.json").read_text())
    assert metadata["retrain"]["decision"] == "promoted"
    loser = json.loads((rejected[0] / "metadata.json").read_text())
    assert loser["retrain"]["decision"] == "kept_champion"
    # `model rollback` still goes back to the champion before, never to the loser.
    assert rollback_versions(repository) == [champion]
