"""Progress bars redraw on a terminal only; off a terminal, training logs one line per epoch."""

from __future__ import annotations

import io
import sys

import pytest
from structlog.testing import capture_logs

from catstream.progress import on_terminal
from tests.unit.test_categoriser_training import synthetic
from training.train import TrainConfig, train
from triton_models.categoriser.hierarchy import LabelSpace


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_only_when_asked_for_on_a_terminal() -> None:
    assert on_terminal(True, Terminal())
    assert not on_terminal(False, Terminal())
    assert not on_terminal(True, io.StringIO())  # a file or a pipe


def test_off_a_terminal_training_logs_one_line_per_epoch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    examples, data, taxonomy = synthetic(20, seed=0)
    human = [e.human for e in examples if e.human is not None]
    space = LabelSpace.build(taxonomy, human, human)
    config = TrainConfig(seed=1, epochs=4, patience=10, n_buckets=1024, hidden=32)
    with capture_logs() as logs:
        model = train(examples, data, space, config, progress=True)
    epochs = [entry for entry in logs if entry["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [h["epoch"] for h in model.history]
    assert "\r" not in stderr.getvalue()  # no bar redraws
    with capture_logs() as quiet:
        train(examples, data, space, config, progress=False)
    assert not [entry for entry in quiet if entry["event"] == "epoch"]
