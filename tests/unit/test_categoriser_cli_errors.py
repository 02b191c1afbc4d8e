"""``catstream train`` refuses bad labels with the file and line to fix (before any training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catstream.cli import main

TAXONOMY = "Home > Kitchen > Cookware\nHome > Lighting\nFashion > Shoes\n"


@pytest.fixture
def taxonomy(tmp_path: Path) -> Path:
    path = tmp_path / "taxonomy.txt"
    path.write_text(TAXONOMY)
    return path


def train(taxonomy: Path, labels: Path, tmp_path: Path) -> int:
    return main(
        [
            "train",
            "--taxonomy", str(taxonomy),
            "--labels", str(labels),
            "--model-repository", str(tmp_path / "repo"),
            "--no-load",
            "--quiet",
        ]
    )  # fmt: skip


def test_unknown_category_path_names_file_and_line(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"product_id": "1", "title": "Frying pan", "category": "Home > Kitchen > Cookware"}\n'
        '{"product_id": "2", "title": "Desk lamp", "category": "Home > Lightning"}\n'
    )
    assert train(taxonomy, labels, tmp_path) == 2
    error = capsys.readouterr().err
    assert f"{labels}:2" in error
    assert "Home > Lightning" in error
    assert "Home > Lighting" in error  # the suggestion


def test_empty_labels_file_is_an_error_naming_the_file(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "empty.jsonl"
    labels.write_text("\n")
    assert train(taxonomy, labels, tmp_path) == 2
    error = capsys.readouterr().err
    assert str(labels) in error
    assert "empty" in error


def test_wrongly_typed_product_field_names_the_line(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"product_id": "1", "title": "Pan", "category": "Home > Kitchen > Cookware"}\n'
        '{"product_id": "2", "title": ["not", "text"], "category": "Home > Lighting"}\n'
    )
    assert train(taxonomy, labels, tmp_path) == 2
    error = capsys.readouterr().err
    assert f"{labels}:2" in error
    assert "title" in error


def test_unlabelled_products_need_rules(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"product_id": "1", "title": "Pan", "category": "Home > Kitchen"}\n')
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text('{"product_id": "9", "title": "Boots"}\n')
    code = main(
        [
            "train",
            "--taxonomy", str(taxonomy),
            "--labels", str(labels),
            "--unlabelled", str(unlabelled),
            "--model-repository", str(tmp_path / "repo"),
            "--no-load",
        ]
    )  # fmt: skip
    assert code == 2
    assert "--rules" in capsys.readouterr().err


def test_model_repository_without_a_categoriser_config_is_refused_before_training(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        '{"product_id": "1", "title": "Frying pan", "category": "Home > Kitchen > Cookware"}\n'
        '{"product_id": "2", "title": "Desk lamp", "category": "Home > Lighting"}\n'
    )
    assert train(taxonomy, labels, tmp_path) == 2
    error = capsys.readouterr().err
    assert "config.pbtxt not found" in error
    assert "--model-repository" in error
    assert "exported" not in error  # nothing was trained
