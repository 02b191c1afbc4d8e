"""Which categoriser version the worker serves with, without a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catstream.errors import RecoverableError
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from streams import model_state
from streams.model_state import ModelState
from triton_models.categoriser.metadata import ModelVersionError


class Repository:
    """Stands in for the model repository on disk: a served version, or none."""

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.loads: list[int] = []

    def served_version(self, repository: Path, name: str) -> int:
        if self.version is None:
            raise ModelVersionError("no categoriser versions")
        return self.version

    def load_metadata(self, repository: Path, version: int, name: str) -> Any:
        self.loads.append(version)
        return type("Metadata", (), {"version": version})()


@pytest.fixture
def repository(monkeypatch: pytest.MonkeyPatch) -> Repository:
    repo = Repository(None)
    monkeypatch.setattr(model_state, "served_version", repo.served_version)
    monkeypatch.setattr(model_state, "load_metadata", repo.load_metadata)
    return repo


def test_without_a_trained_version_the_worker_waits_with_what_to_do(
    repository: Repository,
) -> None:
    with pytest.raises(RecoverableError, match="catstream train"):
        ModelState(Settings()).current()


def test_a_version_is_loaded_once_and_kept_between_refreshes(repository: Repository) -> None:
    repository.version = 3
    state = ModelState(Settings(), refresh_s=3600)
    assert state.current().version == 3
    repository.version = 4
    assert state.current().version == 3  # not looked for again before refresh_s
    assert repository.loads == [3]


def test_a_new_version_is_picked_up_and_a_vanished_one_keeps_the_last(
    repository: Repository,
) -> None:
    repository.version = 3
    state = ModelState(Settings(), refresh_s=0)
    assert state.current().version == 3
    assert state.current().version == 3
    assert repository.loads == [3]
    repository.version = 4
    assert state.current().version == 4
    repository.version = None  # repository being rewritten: keep serving with 4
    assert state.current().version == 4


def _version_with_taxonomy(repository: Path, version: int, text: str | None) -> Any:
    """A version directory carrying ``text`` as its taxonomy (or none), and its metadata."""
    directory = repository / "categoriser" / str(version)
    directory.mkdir(parents=True)
    taxonomy_hash = ""
    if text is not None:
        (directory / "taxonomy.txt").write_text(text, encoding="utf-8")
        taxonomy_hash = Taxonomy.load(directory / "taxonomy.txt").hash
    return type("Metadata", (), {"version": version, "taxonomy_hash": taxonomy_hash})()


def test_each_version_is_described_with_the_taxonomy_it_carries(tmp_path: Path) -> None:
    # Before: the worker described every version with settings.taxonomy_path, and a model
    # trained on another tree crashed the infer agent with UnknownCategoryError.
    state = ModelState(Settings(model_repository=tmp_path))
    toys = _version_with_taxonomy(tmp_path, 1, "Toys\nToys > Puzzles\n")
    garden = _version_with_taxonomy(tmp_path, 2, "Garden\nGarden > Hoses\n")
    older = _version_with_taxonomy(tmp_path, 3, None)
    toys_tree, garden_tree = state.taxonomy_for(toys), state.taxonomy_for(garden)
    assert toys_tree is not None
    assert garden_tree is not None
    assert [toys_tree.path_str(c) for c in toys_tree.leaves()] == ["Toys > Puzzles"]
    assert [garden_tree.path_str(c) for c in garden_tree.leaves()] == ["Garden > Hoses"]
    assert state.taxonomy_for(older) is None  # no copy: the caller falls back to settings'
