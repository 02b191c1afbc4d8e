"""The agents publish compressed batches: the broker stores and moves fewer bytes.

noida-db (the local broker) rewrites everything it holds about once a second while
anything changes, so its CPU per product follows the bytes it keeps (bench/README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catstream.settings import Settings
from streams.app import create_app


def test_the_agents_producer_compresses_with_zstd_by_default(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path))
    assert app.conf.producer_compression_type == "zstd"
    # What faust hands to aiokafka's producer.
    assert _aiokafka_settings(app)["compression_type"] == "zstd"


@pytest.mark.parametrize(("setting", "expected"), [("none", None), ("lz4", "lz4")])
def test_compression_follows_the_setting(
    tmp_path: Path, setting: str, expected: str | None
) -> None:
    app = create_app(Settings.model_validate({"home": tmp_path, "producer_compression": setting}))
    assert _aiokafka_settings(app)["compression_type"] == expected


def _aiokafka_settings(app: Any) -> dict[str, Any]:
    return dict(app.producer._settings_default())
