"""Model selection for issue 9 on the development set: does anything beat the linear model?

    .venv/bin/python -m bench.dev_model_selection [--data ../shared/data/amazon_uk_toys.jsonl]
        [--embeddings minilm.npy] [--json out.json] [--mlp-epochs 5]

The split is ``bench.dev_benchmark.dev_split`` (the data README's). Every candidate
reads title + brand only (the dev set has no descriptions, raw categories or images):

* ``linear_svc``: the reference, TF-IDF (word 1–2 + char_wb 2–5, sublinear tf) and
  ``LinearSVC(C=0.5)``;
* ``svc_minilm``: the same TF-IDF plus the MiniLM embedding as dense columns, one
  LinearSVC (the core of the shipped linear categoriser);
* ``+ mlp``: ``svc_minilm`` decision values plus ``alpha`` times the log-probabilities of a
  one-hidden-layer MLP (ReLU, dropout 0.5) over ``[TF-IDF ; MiniLM]``;
* ``+ complement_nb``: ``svc_minilm`` plus ``alpha`` times Complement Naive Bayes scores.

``alpha`` is chosen on a validation fifth of the training products (models fitted on
the other four fifths), then every model is refitted on all training products and
scored once on the test products. The best ``alpha`` *on the test set* is printed as
well, labelled as an upper bound: it is not a selection.

``--embeddings`` takes a ``.npy`` of MiniLM embeddings of the data file's rows in file
order (``TextEncoder.encode_products`` of title and brand); without it the rows are
encoded here (the slow part on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from bench.dev_benchmark import DEFAULT_DATA, dev_split

ALPHAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
NB_ALPHAS = (0.0, 0.01, 0.03, 0.1, 0.3)
VALIDATION_FOLDS = 5  # one fifth of the training products chooses alpha


def _text(row: dict[str, Any]) -> str:
    return f"{row['title']} {row.get('brand') or ''}".strip()


def _tfidf(train: list[str], other: list[list[str]]) -> tuple[Any, list[Any]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizers = [
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), dtype=np.float32),
        TfidfVectorizer(
            sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 5), dtype=np.float32
        ),
    ]
    fitted = sp.hstack([v.fit_transform(train) for v in vectorizers], format="csr")
    rest = [sp.hstack([v.transform(t) for v in vectorizers], format="csr") for t in other]
    return fitted, rest


def _svc(x_train: Any, y_train: NDArray[Any], x_test: Any, n_classes: int) -> NDArray[Any]:
    """LinearSVC(C=0.5) decision values in class-id order (absent class: -10)."""
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=0.5, random_state=13).fit(x_train, y_train)
    out = np.full((x_test.shape[0], n_classes), -10.0, dtype=np.float32)
    out[:, model.classes_] = model.decision_function(x_test)
    return out


def _complement_nb(
    x_train: Any, y_train: NDArray[Any], x_test: Any, n_classes: int
) -> NDArray[Any]:
    from sklearn.naive_bayes import ComplementNB

    model = ComplementNB(alpha=0.3).fit(x_train, y_train)
    scores = np.asarray(model.predict_log_proba(x_test), dtype=np.float32)
    out = np.full((x_test.shape[0], n_classes), scores.min() - 10.0, dtype=np.float32)
    out[:, model.classes_] = scores - scores.max(axis=1, keepdims=True)
    return out


def _mlp(
    x_train: Any,
    e_train: NDArray[Any],
    y_train: NDArray[Any],
    x_test: Any,
    e_test: NDArray[Any],
    n_classes: int,
    epochs: int,
    hidden: int = 256,
    seed: int = 0,
) -> NDArray[Any]:
    """Log-probabilities of a one-hidden-layer MLP over [TF-IDF ; MiniLM] (Adam, batch 256)."""
    import torch

    torch.manual_seed(seed)

    def csr(matrix: Any) -> torch.Tensor:
        m = matrix.tocsr().astype(np.float32)
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data),
            size=m.shape,
        )

    sparse_in = torch.nn.Parameter(torch.randn(x_train.shape[1], hidden) * 0.02)
    bias = torch.nn.Parameter(torch.zeros(hidden))
    dense_in = torch.nn.Linear(e_train.shape[1], hidden)
    head = torch.nn.Linear(hidden, n_classes)
    dropout = torch.nn.Dropout(0.5)
    params = [sparse_in, bias, *dense_in.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=3e-3)

    def forward(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        hidden_values = torch.relu(torch.sparse.mm(x, sparse_in) + bias + dense_in(e))
        return head(dropout(hidden_values))

    labels = torch.from_numpy(y_train.astype(np.int64))
    embeddings = torch.from_numpy(e_train.astype(np.float32))
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        dropout.train()
        order = rng.permutation(x_train.shape[0])
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                forward(csr(x_train[rows]), embeddings[rows]), labels[rows]
            )
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    dropout.eval()
    with torch.no_grad():
        logits = forward(csr(x_test), torch.from_numpy(e_test.astype(np.float32)))
        return torch.log_softmax(logits, dim=1).numpy()


def _accuracy(scores: NDArray[Any], truth: NDArray[Any]) -> float:
    return float((scores.argmax(axis=1) == truth).mean())


def _candidates(
    x_train: Any,
    e_train: NDArray[Any],
    y_train: NDArray[Any],
    x_test: Any,
    e_test: NDArray[Any],
    n_classes: int,
    mlp_epochs: int,
) -> dict[str, NDArray[Any]]:
    joint_train = sp.hstack([x_train, sp.csr_matrix(e_train)], format="csr")
    joint_test = sp.hstack([x_test, sp.csr_matrix(e_test)], format="csr")
    return {
        "svc_minilm": _svc(joint_train, y_train, joint_test, n_classes),
        "mlp": _mlp(x_train, e_train, y_train, x_test, e_test, n_classes, mlp_epochs),
        "complement_nb": _complement_nb(x_train, y_train, x_test, n_classes),
    }


def run(data: Path, embeddings: Path | None, mlp_epochs: int) -> dict[str, Any]:
    from training.linear import fold_ids

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    train_rows, test_rows = dev_split(rows)
    if embeddings is not None:
        every = np.load(embeddings).astype(np.float32)
    else:
        from triton_models.categoriser.encoder import shared_encoder
        from triton_models.categoriser.features import ProductFields

        every = shared_encoder().encode_products(
            [ProductFields(title=r["title"], brand=r.get("brand") or "") for r in rows]
        )
    if len(every) != len(rows):
        raise SystemExit(f"{embeddings} has {len(every)} rows, the data file {len(rows)}")

    def number(row: dict[str, Any]) -> int:
        return int(str(row["product_id"]).removeprefix("dev-"))

    classes = sorted({r["category"] for r in train_rows})
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.asarray([index[r["category"]] for r in train_rows], dtype=np.int64)
    y_test = np.asarray([index[r["category"]] for r in test_rows], dtype=np.int64)
    e_train = every[[number(r) for r in train_rows]]
    e_test = every[[number(r) for r in test_rows]]
    t_train, t_test = [_text(r) for r in train_rows], [_text(r) for r in test_rows]
    n = len(classes)
    results: dict[str, Any] = {"split": {"train": len(train_rows), "test": len(test_rows)}}

    # 1. alpha on a validation fifth of the training products
    started = time.monotonic()
    held = fold_ids(y_train, VALIDATION_FOLDS, seed=13) == 0
    fit_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
    x_fit, (x_val,) = _tfidf([t_train[i] for i in fit_rows], [[t_train[i] for i in val_rows]])
    val = _candidates(
        x_fit, e_train[fit_rows], y_train[fit_rows], x_val, e_train[val_rows], n, mlp_epochs
    )
    y_val = y_train[val_rows]
    chosen = {
        "mlp": max(ALPHAS, key=lambda a: _accuracy(val["svc_minilm"] + a * val["mlp"], y_val)),
        "complement_nb": max(
            NB_ALPHAS, key=lambda a: _accuracy(val["svc_minilm"] + a * val["complement_nb"], y_val)
        ),
    }
    results["validation"] = {
        "rows": int(held.sum()),
        "svc_minilm": _accuracy(val["svc_minilm"], y_val),
        "mlp_alone": _accuracy(val["mlp"], y_val),
        "chosen_alpha": chosen,
        "seconds": round(time.monotonic() - started, 1),
    }

    # 2. refit on all training products, score the test products once
    started = time.monotonic()
    x_train, (x_test,) = _tfidf(t_train, [t_test])
    reference = _svc(x_train, y_train, x_test, n)
    test = _candidates(x_train, e_train, y_train, x_test, e_test, n, mlp_epochs)
    results["test"] = {
        "linear_svc": _accuracy(reference, y_test),
        "svc_minilm": _accuracy(test["svc_minilm"], y_test),
        "mlp_alone": _accuracy(test["mlp"], y_test),
        "complement_nb_alone": _accuracy(test["complement_nb"], y_test),
    }
    for name, alphas in (("mlp", ALPHAS), ("complement_nb", NB_ALPHAS)):
        fused = {a: _accuracy(test["svc_minilm"] + a * test[name], y_test) for a in alphas}
        results["test"][f"svc_minilm + {name} (alpha {chosen[name]} from validation)"] = fused[
            chosen[name]
        ]
        best = max(fused, key=lambda a: fused[a])
        results["test"][f"upper bound, {name}: best alpha on test ({best})"] = fused[best]
    results["test_seconds"] = round(time.monotonic() - started, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embeddings", type=Path)
    parser.add_argument("--mlp-epochs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args.data, args.embeddings, args.mlp_epochs)
    for name, value in results["test"].items():
        print(f"{name:60s} {value:.4f}")
    print(json.dumps(results["validation"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
