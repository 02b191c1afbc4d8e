"""From files to encoded training data: read, normalise, rule-label, hash, embed.

Inputs are normalised with ``normaliser.normalise_product``, the code
the stream runs, so training and serving see the same text. Human labels come
from ``--labels``; ``--unlabelled`` products get rule labels (``--rules``) and
no human label. A product in both files keeps its human label.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from normaliser import normalise_product
from normaliser.google_category import google_category_in
from schemas.events import NormalisedProduct, RawProduct
from training.dataset import Example, data_hash, product_fields
from training.labels import LabelsError, read_labels, read_products
from training.rules import RuleLabeller
from training.train import EncodedData
from triton_models.categoriser.encoder import TextEncoder
from triton_models.categoriser.features import FeatureHasher
from triton_models.categoriser.network import IMAGE_DIM

log = get_logger(__name__)

ImageEmbedder = Callable[[Sequence[NormalisedProduct]], tuple[NDArray[Any], NDArray[Any]]]


@dataclass(frozen=True)
class TrainingSet:
    examples: list[Example]
    rows: list[dict[str, Any]]  # the input lines as read (human-labelled ones with category)
    data_hash: str


def normalised(fields: dict[str, Any], where: str) -> NormalisedProduct:
    """Normalise one input line; a field of the wrong type is a LabelsError naming the line."""
    try:
        raw = RawProduct.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in exc.errors()
        )
        raise LabelsError(f"{where}: invalid product fields ({problems}); fix the line") from None
    return normalise_product(raw)


def load_training_set(
    taxonomy: Taxonomy,
    labels_path: Path | None,
    rules_path: Path | None = None,
    unlabelled_path: Path | None = None,
    google_labels: bool = False,
) -> TrainingSet:
    """Labelled products, plus ``unlabelled`` ones labelled by ``rules`` and, with
    ``google_labels``, by their feed's ``google_product_category`` (a weak label
    wherever it names a category of ``taxonomy``; it wins over the rules)."""
    labelled = read_labels(labels_path, taxonomy) if labels_path is not None else []
    examples: list[Example] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in labelled:
        product = normalised(item.fields, f"{item.source}:{item.line}")
        examples.append(Example(product=product, human=item.category_id))
        rows.append({**item.fields, "category": taxonomy.path_str(item.category_id)})
        seen.add(product.product_id)
    hashed = [json.dumps(r, sort_keys=True, ensure_ascii=False).encode() for r in rows]
    if unlabelled_path is not None:
        if rules_path is None and not google_labels:
            raise LabelsError(
                f"{unlabelled_path}: unlabelled products need --rules (or --google-labels) "
                "to label them; pass --rules RULES.yaml"
            )
        labeller = RuleLabeller.load(rules_path, taxonomy) if rules_path is not None else None
        fired = 0
        weak = 0
        for line in read_products(unlabelled_path):
            product = normalised(line.fields, f"{line.source}:{line.line}")
            if product.product_id in seen:
                continue
            google = google_category_in(product.extra, taxonomy) if google_labels else None
            if google is not None:
                weak += 1
                seen.add(product.product_id)
                examples.append(Example(product=product, human=google))
                row = {**line.fields, "category": taxonomy.path_str(google)}
                rows.append(row)
                hashed.append(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
                continue
            if labeller is None:
                continue
            rules = frozenset(labeller.label(product))
            fired += bool(rules)
            examples.append(Example(product=product, rules=rules))
            hashed.append(json.dumps(line.fields, sort_keys=True, ensure_ascii=False).encode())
        log.info(
            "rule_labels",
            products=len(examples) - len(rows),
            with_labels=fired,
            google_category_labels=weak,
        )
        if rules_path is not None:
            hashed.append(Path(rules_path).read_bytes())
    hashed.append(taxonomy.hash.encode())
    return TrainingSet(examples=examples, rows=rows, data_hash=data_hash(hashed))


def encode_examples(
    examples: Sequence[Example],
    hasher: FeatureHasher,
    encoder: TextEncoder,
    image_embedder: ImageEmbedder | None = None,
    progress: bool = True,
) -> EncodedData:
    """Hashed features, MiniLM embeddings and (optionally) image embeddings per example."""
    fields = [e.fields for e in examples]
    feature_ids: list[NDArray[Any]] = []
    feature_weights: list[NDArray[Any]] = []
    for item in fields:
        ids, weights = hasher.product(item)
        if not ids:
            ids, weights = [0], [0.0]
        feature_ids.append(np.asarray(ids, dtype=np.int64))
        feature_weights.append(np.asarray(weights, dtype=np.float32))
    text = encoder.encode_products(fields, progress=progress)
    if image_embedder is None:
        image = np.zeros((len(examples), IMAGE_DIM), dtype=np.float32)
        mask = np.zeros(len(examples), dtype=np.float32)
    else:
        image, mask = image_embedder([e.product for e in examples])
    return EncodedData(feature_ids, feature_weights, text, image, mask)


def training_fields(product: NormalisedProduct) -> dict[str, str]:
    """What the model reads of a product (for logs and the train split file)."""
    fields = product_fields(product)
    return {"title": fields.title, "brand": fields.brand, "raw_category": fields.raw_category}


def local_image_embedder(settings: Settings) -> ImageEmbedder:
    """Fetch each product's first image (cached) and embed it in-process (EfficientNet-Lite0).

    The same preprocessing and weights as the ``image_encoder`` Triton model; a
    product without a usable image gets zeros and mask 0, as in the stream.
    """
    from streams.images import FetchedImage, fetch_images
    from triton_models.image_encoder.encoder import ImageEncoder

    encoder = ImageEncoder()

    def embed(products: Sequence[NormalisedProduct]) -> tuple[NDArray[Any], NDArray[Any]]:
        wanted = [(i, p.image_urls[0]) for i, p in enumerate(products) if p.image_urls]
        vectors = np.zeros((len(products), IMAGE_DIM), dtype=np.float32)
        mask = np.zeros(len(products), dtype=np.float32)
        results = fetch_images(settings, [url for _, url in wanted])
        fetched = [
            (row, r.data)
            for (row, _), r in zip(wanted, results, strict=True)
            if isinstance(r, FetchedImage)
        ]
        if fetched:
            embeddings, ok = encoder.encode_bytes([data for _, data in fetched])
            for (row, _), vector, good in zip(fetched, embeddings, ok, strict=True):
                if good:
                    vectors[row] = vector
                    mask[row] = 1.0
        log.info(
            "training_images",
            products=len(products),
            with_urls=len(wanted),
            embedded=int(mask.sum()),
        )
        return vectors, mask

    return embed
