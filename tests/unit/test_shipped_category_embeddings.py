"""The default taxonomy's category embeddings ship with the package, so no one computes them."""

from __future__ import annotations

from typing import Any

import numpy as np

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from training.zero_shot import category_embeddings, zero_shot_space


class RefusingEncoder:
    """Fails the test if the embeddings were computed instead of read from the package."""

    def encode(self, texts: Any) -> Any:
        raise AssertionError(f"computed {len(texts)} embeddings: the shipped file did not match")


def test_the_default_taxonomy_needs_no_encoder() -> None:
    taxonomy = Taxonomy.load(Settings().taxonomy_path)
    ids = zero_shot_space(taxonomy).label_ids
    embeddings = category_embeddings(taxonomy, ids, RefusingEncoder())  # type: ignore[arg-type]
    assert embeddings.shape == (len(ids), 384)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
