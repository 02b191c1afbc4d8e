"""The ``catstream`` command line.

Each command group lives beside the code it drives and exposes
``register(subparsers)``; this module only wires them together, importing a
group lazily so ``catstream stack status`` does not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from catstream.logs import configure_logging
from catstream.settings import get_settings

# command name -> module exposing register(subparsers) and help text
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("deploy.stack_cli", "start, stop and inspect the local stack of real services"),
    "topics": ("streams.topics_cli", "create topics and tail them"),
    "feed": ("feeds.cli", "generate and publish affiliate feeds"),
    "deadletter": ("streams.deadletter_cli", "inspect and replay dead letters"),
    "worker": ("streams.worker_cli", "run the stream worker (agents, sinks, API)"),
    "sink": ("workers.sink_cli", "run one sink (milvus or elasticsearch) as its own process"),
    "train": ("training.train_cli", "train and export a categoriser"),
    "model": ("triton_models.categoriser.model_cli", "list, load and roll back model versions"),
    "predict": ("training.predict_cli", "categorise a JSON-lines file offline"),
    "evaluate": ("training.evaluate_cli", "evaluate against labelled products"),
    "similar": ("workers.similar_cli", "find similar products"),
    "demo": ("deploy.demo", "run the whole flow on the local stack"),
    "embed": ("triton_models.text_encoder_cli", "embed sentences through Triton"),
    "review": ("streams.review_cli", "see review items and send labels"),
    "retrain": ("training.retrain_cli", "train a challenger on the labels; promote it if better"),
    # same-product matching (issue 12)
    "train-matcher": ("training.matcher_cli", "train the same-product pair model"),
    "evaluate-matcher": ("training.matcher_cli", "evaluate the pair model and blocking recall"),
    "offers": ("workers.offers_cli", "other merchants' offers of a product, cheapest first"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catstream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name == wanted:
            importlib.import_module(module_name).register(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    args = build_parser(args_list).parse_args(args_list)
    handler = getattr(args, "handler", None)
    if handler is None:
        print(f"catstream {args.command}: missing sub-command; see catstream {args.command} --help")
        return 2
    result = handler(args, settings)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
