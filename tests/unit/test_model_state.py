"""Which categoriser version the worker serves with, without a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catstream.errors import RecoverableError
from catstream.settings import Settings
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
