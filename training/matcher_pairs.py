"""Labelled pair files for the matcher: reading them, embedding their records, featurising.

A pairs file is JSON lines ``{"left": {...}, "right": {...}, "label": 0|1}``; a
record has ``id`` (or ``product_id``), ``title`` and optionally ``brand``,
``modelno``/``model_number``, ``price``, ``currency``, ``category``,
``merchant`` and product codes (``gtin``, ``ean``, ``upc``, ``mpn``), the
format of ``../shared/data/match/*/`` (see its SOURCE.txt).

Text vectors are the stream's: MiniLM over ``title | brand | category``
(``embedding_sentence``), computed in-process with the categoriser's encoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.matcher.features import MatchRecord, PairFeaturizer
from triton_models.matcher.records import embedding_sentence, record_from_fields


class PairsError(ValueError):
    """A pairs file cannot be read; the message names the line and the fix."""


@dataclass(frozen=True)
class LabelledPairs:
    path: Path
    pairs: list[tuple[MatchRecord, MatchRecord]]
    labels: NDArray[Any]
    sha256: str

    def records(self) -> dict[str, MatchRecord]:
        found: dict[str, MatchRecord] = {}
        for left, right in self.pairs:
            found.setdefault(left.product_id, left)
            found.setdefault(right.product_id, right)
        return found

    def true_pairs(self) -> set[tuple[str, str]]:
        return {
            (a.product_id, b.product_id)
            for (a, b), label in zip(self.pairs, self.labels, strict=True)
            if label
        }


def read_pairs(path: Path) -> LabelledPairs:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PairsError(
            f"cannot read {path}: {exc.strerror}; pass an existing pairs file"
        ) from exc
    pairs: list[tuple[MatchRecord, MatchRecord]] = []
    labels: list[int] = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            left, right, label = row["left"], row["right"], int(row["label"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PairsError(
                f"{path}:{number} is not a pair ({type(exc).__name__}: {exc}); each line must be "
                '{"left": {...}, "right": {...}, "label": 0 or 1}'
            ) from exc
        records = (record_from_fields(left), record_from_fields(right))
        if not all(r.product_id for r in records):
            raise PairsError(f"{path}:{number}: a record has no id; give each record an 'id'")
        pairs.append(records)
        labels.append(1 if label else 0)
    if not pairs:
        raise PairsError(f"{path} holds no pairs")
    return LabelledPairs(path, pairs, np.asarray(labels), hashlib.sha256(data).hexdigest())


def with_vectors(
    sets: list[LabelledPairs], cache: Path | None = None, progress: bool = False
) -> list[LabelledPairs]:
    """The same pairs, each record carrying its MiniLM text vector (cached by sentence hash)."""
    records: dict[str, MatchRecord] = {}
    for labelled in sets:
        records.update(labelled.records())
    sentences = sorted({embedding_sentence(r) for r in records.values()})
    vectors = _embed(sentences, cache, progress)
    filled = []
    for labelled in sets:
        pairs = [(_vectored(a, vectors), _vectored(b, vectors)) for a, b in labelled.pairs]
        filled.append(replace(labelled, pairs=pairs))
    return filled


def _vectored(record: MatchRecord, vectors: dict[str, NDArray[Any]]) -> MatchRecord:
    return replace(record, text_vector=tuple(vectors[embedding_sentence(record)].tolist()))


def _embed(sentences: list[str], cache: Path | None, progress: bool) -> dict[str, NDArray[Any]]:
    """MiniLM vectors of ``sentences``; with ``cache``, only the sentences not cached yet."""
    known: dict[str, NDArray[Any]] = {}
    cached = cache / "minilm-vectors.npz" if cache is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            known = dict(zip(stored["sentences"].tolist(), stored["vectors"], strict=True))
    missing = [s for s in sentences if s not in known]
    if missing:
        import torch

        from triton_models.categoriser.encoder import shared_encoder

        # One thread: on a shared, busy host two intra-op threads wait on each other.
        torch.set_num_threads(1)
        known.update(zip(missing, shared_encoder().encode(missing, progress=progress), strict=True))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            names = sorted(known)
            np.savez(
                cached, sentences=np.asarray(names), vectors=np.stack([known[n] for n in names])
            )
    return {s: known[s] for s in sentences}


def fitted_featurizer(train: LabelledPairs) -> PairFeaturizer:
    return PairFeaturizer().fit(r.title for r in train.records().values())
