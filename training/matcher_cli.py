"""``catstream train-matcher`` and ``catstream evaluate-matcher``: the same-product pair model.

``train-matcher --pairs train.jsonl [--valid valid.jsonl]`` fits the pair
features' TF-IDF and the gradient-boosted model on the training pairs, chooses
the accept threshold with the best F1 on the validation pairs (``valid.jsonl``
beside the training file when not given) and writes a new version under
``<model_repository>/matcher/<N>/``.

``evaluate-matcher --pairs test.jsonl`` reports precision, recall and F1 of the
served (or ``--version``) model at its threshold, and blocking recall: every
record of ``--pairs`` and ``--index`` files is indexed; for each left record
with a true match, the share of its true matches among its top-k candidates
(k = 5, 20, 100), candidates found as the stream finds them (vector kNN, exact
model number / code, title TF-IDF; ``triton_models.matcher.blocking``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.settings import Settings
from training.matcher_pairs import (
    LabelledPairs,
    PairsError,
    fitted_featurizer,
    read_pairs,
    with_vectors,
)
from triton_models.matcher.blocking import CandidateIndex, blocking_recall
from triton_models.matcher.pair_model import (
    MODEL_NAME,
    MatcherVersionError,
    PairModel,
    PairScorer,
    binary_metrics,
    export_version,
    load_served,
)

log = get_logger(__name__)
BLOCKING_KS = (5, 20, 100)


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, required=True, help="labelled pairs (JSON lines)")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    parser.add_argument("--cache", type=Path, help="cache MiniLM vectors in this directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if name == "train-matcher":
        parser.add_argument("--valid", type=Path, help="default: valid.jsonl beside --pairs")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--no-load",
            action="store_true",
            help="only write the version; by default it is also loaded into Triton (served)",
        )
        parser.set_defaults(handler=run_train)
    else:
        parser.add_argument("--version", type=int, help="matcher version (default: the highest)")
        parser.add_argument(
            "--triton",
            action="store_true",
            help="score through the matcher Triton serves (its highest READY version)",
        )
        parser.add_argument(
            "--index",
            type=Path,
            action="append",
            default=[],
            help="more pair files whose records join the blocking index (repeatable)",
        )
        parser.add_argument("--no-blocking", action="store_true", help="skip blocking recall")
        parser.set_defaults(handler=run_evaluate)


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    valid_path = args.valid or args.pairs.with_name("valid.jsonl")
    try:
        train, valid = with_vectors(
            [read_pairs(args.pairs), read_pairs(valid_path)], args.cache, not args.quiet
        )
    except PairsError as exc:
        print(f"catstream train-matcher: {exc}")
        return 2
    started = time.perf_counter()
    featurizer = fitted_featurizer(train)
    model = PairModel.fit(
        featurizer, featurizer.transform(train.pairs), train.labels, seed=args.seed
    )
    valid_scores = model.score_pairs(valid.pairs)
    threshold = model.choose_threshold(valid_scores, valid.labels)
    metrics = binary_metrics(valid.labels, valid_scores >= threshold)
    model.metadata = {
        "train_pairs": str(args.pairs),
        "train_sha256": train.sha256,
        "valid_pairs": str(valid_path),
        "valid_sha256": valid.sha256,
        "valid_metrics": metrics,
        "seed": args.seed,
    }
    path = export_version(model, settings.model_repository)
    log.info(
        "matcher_trained",
        path=str(path),
        threshold=threshold,
        seconds=round(time.perf_counter() - started, 1),
        **{f"valid_{k}": round(v, 4) for k, v in metrics.items()},
    )
    print(f"matcher version {path.name} written to {path}")
    print(f"threshold {threshold:.2f} (best F1 on {valid_path.name}); valid: {_line(metrics)}")
    return 0 if args.no_load else load_into_triton(settings, int(path.name))


def load_into_triton(settings: Settings, version: int) -> int:
    """Serve ``version`` alone (the matcher keeps no rollback version loaded)."""
    from triton_models.categoriser.model_control import _client, load_versions

    config = Path(settings.model_repository) / MODEL_NAME / "config.pbtxt"
    if not config.is_file():
        print(
            f"not loaded: {config} is missing, so {settings.model_repository} is not a "
            "repository Triton serves (the stack's is CATSTREAM_HOME/model-repository)"
        )
        return 0
    client = _client(settings)
    try:
        live = bool(client.is_server_live())
    except Exception:  # tritonclient raises its own errors, and socket ones
        live = False
    finally:
        client.close()
    if not live:
        print(
            f"not loaded: Triton at {settings.triton_http_url} does not answer; "
            "`catstream stack up` serves the highest version, or rerun with Triton up"
        )
        return 0
    try:
        load_versions(settings, [version], name=MODEL_NAME)
    except RuntimeError as exc:
        print(f"catstream train-matcher: {exc}")
        return 1
    print(f"Triton serves matcher version {version}")
    return 0


def evaluate(
    model: PairScorer, test: LabelledPairs, index_sets: list[LabelledPairs], blocking: bool
) -> dict[str, Any]:
    scores = model.score_pairs(test.pairs)
    metrics = binary_metrics(test.labels, scores >= model.threshold)
    result: dict[str, Any] = {
        "pairs": str(test.path),
        "version": model.metadata.get("version"),
        "threshold": model.threshold,
        **metrics,
    }
    if blocking:
        lefts = {a.product_id: a for a, _ in test.pairs}
        rights: dict[str, Any] = {}
        for labelled in [test, *index_sets]:
            rights.update({b.product_id: b for _, b in labelled.pairs})
        index = CandidateIndex(list(rights.values()))
        recall = blocking_recall(lefts.values(), index, test.true_pairs(), BLOCKING_KS)
        result["blocking"] = {
            "indexed_records": len(rights),
            "queries": len({a for a, _ in test.true_pairs()}),
            "true_pairs": len(test.true_pairs()),
            **{f"recall@{k}": v for k, v in recall.items()},
        }
    return result


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        model: PairScorer
        if args.triton:
            from triton_models.matcher.client import TritonPairModel

            if args.version is not None:
                print(
                    "catstream evaluate-matcher: --triton scores the served version; drop --version"
                )
                return 2
            model = TritonPairModel(settings)
        else:
            model = load_served(settings.model_repository, args.version)
        loaded = with_vectors(
            [read_pairs(args.pairs), *[read_pairs(p) for p in args.index]],
            args.cache,
            not args.quiet,
        )
    except (PairsError, MatcherVersionError, RecoverableError) as exc:
        print(f"catstream evaluate-matcher: {exc}")
        return 2
    result = evaluate(model, loaded[0], loaded[1:], blocking=not args.no_blocking)
    print(f"matcher version {result['version']} on {args.pairs} (threshold {model.threshold:.2f})")
    print(f"  {_line(result)}")
    if "blocking" in result:
        blocking = result["blocking"]
        print(
            f"  blocking recall over {blocking['indexed_records']} indexed records, "
            f"{blocking['true_pairs']} true pairs: "
            + "  ".join(f"@{k} {blocking[f'recall@{k}']:.4f}" for k in BLOCKING_KS)
        )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=_plain), encoding="utf-8")
    return 0


def _line(metrics: dict[str, Any]) -> str:
    return (
        f"precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}  "
        f"F1 {metrics['f1']:.4f}  (tp {metrics['tp']:.0f}, fp {metrics['fp']:.0f}, "
        f"fn {metrics['fn']:.0f})"
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
