"""``catstream retrain [--every DURATION]``: champion/challenger retraining (``training.retrain``).

    catstream retrain [--labels FILE ...] [--unlabelled U [--rules R]] [--taxonomy T]
                      [--every 6h] [--no-load] [--config-name gpu]

Once, or with ``--every`` forever (a long-running Deployment): a failed round is
logged and the next one runs on schedule.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import TaxonomyError
from streams.review_cli import ReviewCliError
from training.retrain import RetrainError, retrain_once

log = get_logger(__name__)
STARTER_RULES = Path(__file__).with_name("rules") / "google_starter.yaml"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``6h``, ``1d`` → seconds; ValueError saying the form otherwise."""
    match = _DURATION.match(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 90s, 15m, 6h or 1d"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--labels", type=Path, action="append", help="labelled JSON-lines file (repeatable)"
    )
    parser.add_argument("--unlabelled", type=Path, help="products for the rules to label")
    parser.add_argument("--rules", type=Path, default=STARTER_RULES, help="default: starter rules")
    parser.add_argument("--taxonomy", type=Path, help="default: settings")
    parser.add_argument("--every", type=parse_duration, help="run again after this, forever")
    parser.add_argument("--config-name", help="Triton config to load with, e.g. 'gpu'")
    parser.add_argument(
        "--no-load",
        action="store_true",
        help="on promotion, write the version policy only (Triton loads it when it restarts)",
    )
    parser.set_defaults(handler=run)


def _round(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = retrain_once(settings, args)
    except (RetrainError, ReviewCliError, TaxonomyError, RuntimeError, RecoverableError) as exc:
        print(f"catstream retrain: {exc}", file=sys.stderr)
        return 1
    decision = result.decision
    champion = (
        f"v{decision.champion_version} {decision.champion_score:.4f}"
        if decision.champion_version is not None and decision.champion_score is not None
        else "none"
    )
    print(
        f"challenger v{decision.challenger_version} {decision.challenger_score:.4f}, "
        f"champion {champion} on {decision.holdout_size} holdout labels "
        f"(margin {decision.margin}): {decision.decision.replace('_', ' ')}; "
        f"serving v{decision.served_version}\n  {decision.reason}\n  challenger files: "
        f"{result.challenger_dir}"
    )
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.every is None:
        return _round(args, settings)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            code = _round(args, settings)
            log.info("retrain_round_done", exit_code=code, next_in_s=args.every)
            stop.wait(args.every)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
