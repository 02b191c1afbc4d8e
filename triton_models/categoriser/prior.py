"""The zero-shot category prior: how close a product's MiniLM embedding is to each category's.

A category's embedding is the normalised mix of the MiniLM embeddings of its
name and of its full path (``training.zero_shot`` builds them from a taxonomy),
so the prior needs no labels. Both heads' logits are ``scale * (cosine - bias)``:
the exclusive head (softmax) is shift-invariant, so ``bias`` only moves the
independent head's sigmoid.

``CategoryPrior`` is a TorchScript-able module: ``PriorNetwork`` wraps it with
the categoriser network's signature, so a zero-shot version is served by the
same ``serving.Predictor`` and ``triton_model.py`` as a trained one; a trained
network can hold a ``CategoryPrior`` too and use its logits for the categories
it has no labels for (see ``training.zero_shot.category_prior``).
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_SCALE = 30.0  # cosine differences of ~0.1 become a factor e^3 in the softmax
DEFAULT_BIAS = 0.5  # the independent head's sigmoid is 0.5 at cosine 0.5


class CategoryPrior(nn.Module):
    """``[n, 384]`` normalised text embeddings → ``[n, categories]`` prior logits."""

    def __init__(
        self, embeddings: torch.Tensor, scale: float = DEFAULT_SCALE, bias: float = DEFAULT_BIAS
    ) -> None:
        super().__init__()
        if embeddings.dim() != 2:
            raise ValueError(
                f"category embeddings must be [categories, dim], got {embeddings.shape}"
            )
        # A frozen parameter, not a buffer: typed for mypy, a constant once scripted and frozen.
        self.embeddings = nn.Parameter(
            embeddings.to(torch.float32).contiguous(), requires_grad=False
        )
        self.scale = float(scale)
        self.bias = float(bias)

    def similarity(self, text: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (the embeddings on both sides are L2-normalised)."""
        return text @ self.embeddings.t()

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.similarity(text) - self.bias)


class PriorNetwork(nn.Module):
    """The zero-shot categoriser, with the categoriser network's inputs and outputs.

    The sparse and image inputs are accepted and ignored; ``leaf_positions`` picks
    the exclusive head's classes (the taxonomy's leaves) out of the label map.
    """

    def __init__(self, prior: CategoryPrior, leaf_positions: torch.Tensor) -> None:
        super().__init__()
        self.prior = prior
        self.leaf_positions = nn.Parameter(leaf_positions.to(torch.int64), requires_grad=False)

    def forward(
        self,
        indices: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(independent logits [n, labels], exclusive logits [n, leaves])."""
        logits = self.prior(text)
        return logits, logits.index_select(1, self.leaf_positions)


def script_prior_network(network: PriorNetwork) -> torch.jit.ScriptModule:
    """An eval-mode, frozen TorchScript copy for export."""
    network.eval()
    return torch.jit.freeze(torch.jit.script(network))
