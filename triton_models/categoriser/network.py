"""The Wide & Deep categoriser network (torch, TorchScript-able).

- wide: a linear map of the hashed sparse features (``EmbeddingBag`` = a sparse
  linear layer) to ``wide_dim`` values;
- deep: an MLP on ``[384-d MiniLM text embedding, 1280-d image embedding * mask, mask]``;
- shared: one layer on ``[wide, deep]``;
- two heads, each seeing ``[shared, wide]`` so the wide path also reaches the
  logits linearly (the "wide" in Wide & Deep):
  - ``independent``: one sigmoid logit per label-map category (multi-label,
    trained on rule labels with the ancestor closure and on human labels);
  - ``exclusive``: softmax logits over the leaf set (trained on human labels).

The module returns raw logits; temperature, hierarchy and thresholds are applied
by ``serving.Predictor`` so training, Triton and offline code share them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

IMAGE_DIM = 1280


@dataclass(frozen=True)
class NetworkConfig:
    n_buckets: int
    n_labels: int
    n_leaves: int
    text_dim: int = 384
    image_dim: int = IMAGE_DIM
    wide_dim: int = 32
    hidden: int = 256
    dropout: float = 0.3
    input_dropout: float = 0.1
    wide_dropout: float = 0.5

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class WideAndDeep(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.wide = nn.EmbeddingBag(config.n_buckets, config.wide_dim, mode="sum")
        # Small init: a product sums ~100 weighted rows; N(0, 1) rows would start
        # the wide path far louder than the deep one.
        nn.init.normal_(self.wide.weight, std=0.02)
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.wide_dropout = nn.Dropout(config.wide_dropout)
        self.deep = nn.Sequential(
            nn.Linear(config.text_dim + config.image_dim + 1, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
        )
        self.shared = nn.Sequential(
            nn.Linear(config.wide_dim + config.hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
        )
        head_in = config.hidden + config.wide_dim
        self.independent = nn.Linear(head_in, config.n_labels)
        self.exclusive = nn.Linear(head_in, config.n_leaves)

    def forward(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(independent logits [n, n_labels], exclusive logits [n, n_leaves])."""
        wide = self.wide(indices, offsets, per_sample_weights=weights)
        return self.heads(wide, text, image, image_mask)

    def heads(
        self,
        wide: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after the wide lookup (training computes ``wide`` from gathered rows)."""
        mask = image_mask.reshape(-1, 1)
        wide = self.wide_dropout(wide)
        dense = torch.cat([text, image * mask, mask], dim=1)
        deep = self.deep(self.input_dropout(dense))
        shared = self.shared(torch.cat([wide, deep], dim=1))
        features = torch.cat([shared, wide], dim=1)
        return self.independent(features), self.exclusive(features)


def to_torchscript(model: WideAndDeep) -> torch.jit.ScriptModule:
    """An eval-mode TorchScript copy for export (dropout off)."""
    model.eval()
    scripted = torch.jit.script(model)
    return torch.jit.freeze(scripted)


@dataclass(frozen=True)
class LinearConfig:
    """Shapes of the linear categoriser (metadata ``network``)."""

    n_features: int
    n_labels: int
    n_leaves: int
    n_reference: int
    text_dim: int = 384
    image_dim: int = IMAGE_DIM
    kind: str = "linear"

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


# A feature whose weight row has entries for more than this share of the classes is
# stored dense: scattering its entries once per product costs more than adding a row.
DENSE_ROW_SHARE = 0.125


@dataclass(frozen=True)
class SplitWeights:
    """The TF-IDF weights ``[n_features, n_leaves]`` as dense frequent rows + CSR for the rest."""

    dense_slot: torch.Tensor  # int64 [n_features]: row in dense_weight (last row: zeros)
    dense_weight: torch.Tensor  # float32 [n_dense + 1, n_leaves]
    rows: torch.Tensor  # int64 [n_features + 1]: CSR row pointers (dense rows empty)
    columns: torch.Tensor  # int32 [nnz]
    values: torch.Tensor  # float32 [nnz]

    @classmethod
    def from_csr(
        cls, indptr: torch.Tensor, indices: torch.Tensor, data: torch.Tensor, n_leaves: int
    ) -> SplitWeights:
        """Split a CSR matrix (at least one row) by each row's share of non-zero classes."""
        lengths = indptr[1:] - indptr[:-1]
        is_dense = lengths > DENSE_ROW_SHARE * n_leaves
        n_dense = int(is_dense.sum())
        slot = torch.full((len(lengths),), n_dense, dtype=torch.int64)
        slot[is_dense] = torch.arange(n_dense)
        row_of = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        to_dense = is_dense[row_of]
        dense = torch.zeros((n_dense + 1, n_leaves), dtype=torch.float32)
        dense[slot[row_of[to_dense]], indices[to_dense].to(torch.int64)] = data[to_dense]
        kept = torch.where(is_dense, torch.zeros_like(lengths), lengths)
        rows = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(kept, 0)])
        return cls(slot, dense, rows, indices[~to_dense], data[~to_dense])


class LinearCategoriser(nn.Module):
    """Every input reaches every output linearly: ``x W + text T + (image * mask) I + b``.

    ``x`` is the TF-IDF row in ``EmbeddingBag`` layout (indices, offsets,
    per-sample weights). Most of a one-vs-rest SVM's weights ``W`` are exact
    zeros, and a dense ``W`` over a real catalogue's descriptions (445,000
    features x 1,000 classes) would be 1.8 GB in Triton's stub, so it is held
    in two parts: the rows of frequent features, which have weights for many
    classes, as a dense matrix (``dense_slot`` maps a feature to its row, or to
    the all-zero last row), and every other row as CSR (``weight_rows``,
    ``weight_columns``, ``weight_values``; a dense feature's CSR row is empty).
    ``text`` is the MiniLM embedding, ``image`` the EfficientNet embedding; the
    dense logits *add* to the sparse ones. ``reference`` holds the training
    products' text embeddings for the in-domain score (``similarity``).
    """

    def __init__(
        self,
        config: LinearConfig,
        sparse: SplitWeights,
        text: torch.Tensor,
        image: torch.Tensor,
        bias: torch.Tensor,
        reference: torch.Tensor,
    ) -> None:
        super().__init__()
        self.n_labels = config.n_labels
        self.n_leaves = config.n_leaves
        self.register_buffer("dense_slot", sparse.dense_slot.to(torch.int64).contiguous())
        self.register_buffer("dense_weight", sparse.dense_weight.to(torch.float32).contiguous())
        self.register_buffer("weight_rows", sparse.rows.to(torch.int64).contiguous())
        self.register_buffer("weight_columns", sparse.columns.to(torch.int32).contiguous())
        self.register_buffer("weight_values", sparse.values.to(torch.float32).contiguous())
        self.register_buffer("text_weight", text.to(torch.float32).contiguous())
        self.register_buffer("image_weight", image.to(torch.float32).contiguous())
        self.register_buffer("bias", bias.to(torch.float32).contiguous())
        self.register_buffer("reference", reference.to(torch.float32).contiguous())

    def forward(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(independent logits [n, labels]: zeros, unused; exclusive logits [n, leaves])."""
        logits = self.sparse_logits(indices, offsets, weights, text.shape[0])
        text_weight: torch.Tensor = self.text_weight  # type: ignore[assignment]
        image_weight: torch.Tensor = self.image_weight  # type: ignore[assignment]
        bias: torch.Tensor = self.bias  # type: ignore[assignment]
        masked = image * image_mask.reshape(-1, 1)
        logits = logits + text @ text_weight + masked @ image_weight + bias
        independent = torch.zeros(
            (logits.shape[0], self.n_labels), dtype=logits.dtype, device=logits.device
        )
        return independent, logits

    def sparse_logits(
        self, indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor, n: int
    ) -> torch.Tensor:
        """[n, leaves]: each bag's TF-IDF values times their features' weight rows, summed.

        The dense rows go through ``embedding_bag``; for the CSR rows every
        (product, feature) pair is expanded to its feature's stored (class,
        weight) entries and scattered into the product's row.
        """
        slot: torch.Tensor = self.dense_slot  # type: ignore[assignment]
        dense: torch.Tensor = self.dense_weight  # type: ignore[assignment]
        rows: torch.Tensor = self.weight_rows  # type: ignore[assignment]
        columns: torch.Tensor = self.weight_columns  # type: ignore[assignment]
        values: torch.Tensor = self.weight_values  # type: ignore[assignment]
        out = nn.functional.embedding_bag(
            slot[indices], dense, offsets, mode="sum", per_sample_weights=weights
        )
        device = indices.device
        total = indices.shape[0]
        ends = torch.cat([offsets[1:], torch.tensor([total], dtype=offsets.dtype, device=device)])
        product = torch.repeat_interleave(torch.arange(n, device=device), ends - offsets)
        starts = rows[indices]
        lengths = rows[indices + 1] - starts
        owner = torch.repeat_interleave(torch.arange(total, device=device), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        position = starts[owner] + torch.arange(owner.shape[0], device=device) - first[owner]
        target = product[owner] * self.n_leaves + columns[position].to(torch.int64)
        flat = out.reshape(-1).contiguous()
        flat.index_add_(0, target, values[position] * weights[owner])
        return flat.view(n, self.n_leaves)

    @torch.jit.export
    def similarity(self, text: torch.Tensor) -> torch.Tensor:
        """[n] max cosine similarity of each text embedding to a training product's."""
        reference: torch.Tensor = self.reference  # type: ignore[assignment]
        if reference.shape[0] == 0:
            return torch.ones(text.shape[0], dtype=text.dtype, device=text.device)
        return (text @ reference.t()).max(dim=1).values


def script_linear(model: LinearCategoriser) -> torch.jit.ScriptModule:
    """An eval-mode, frozen TorchScript copy for export (``similarity`` kept)."""
    model.eval()
    return torch.jit.freeze(torch.jit.script(model), preserved_attrs=["similarity"])
