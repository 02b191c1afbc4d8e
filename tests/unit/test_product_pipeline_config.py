"""product_pipeline's configs keep the categoriser's contract, on CPU and on GPU."""

from __future__ import annotations

import re
from pathlib import Path

from triton_models.categoriser.contract import OUTPUTS, PIPELINE_IMAGE_OUTPUTS

REPOSITORY = Path(__file__).resolve().parents[2] / "triton_models" / "repository"
NAME = re.compile(r'name:\s*"([A-Z_]+)"')


def _tensors(config: Path, block: str) -> list[str]:
    text = re.sub(r"#.*", "", config.read_text())
    section = re.search(rf"^{block}\s*\[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert section is not None, f"{config} has no {block} block"
    return NAME.findall(section.group(1))


def test_the_pipeline_takes_the_categorisers_text_and_answers_its_outputs() -> None:
    categoriser = REPOSITORY / "categoriser" / "config.pbtxt"
    text_inputs = [n for n in _tensors(categoriser, "input") if not n.startswith("IMAGE_")]
    configs = sorted((REPOSITORY / "product_pipeline").glob("**/*.pbtxt"))
    assert [c.name for c in configs] == ["config.pbtxt", "gpu.pbtxt"]  # CPU and its GPU twin
    for config in configs:
        assert _tensors(config, "input") == [*text_inputs, "IMAGE"], config
        assert _tensors(config, "output") == [*OUTPUTS, *PIPELINE_IMAGE_OUTPUTS], config
    assert _tensors(categoriser, "output") == OUTPUTS
