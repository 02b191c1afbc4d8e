"""``catstream model list|load|rollback``: categoriser versions and which one Triton serves.

- ``list``: versions on disk with their creation time, test accuracy and data hash,
  which are configured to load, which is served, and Triton's state for each;
- ``load N``: serve version N, keeping the previously served version loaded;
- ``rollback``: serve the version below the served one (the newer one is unloaded;
  its files stay, so ``catstream model load N`` brings it back).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from catstream.settings import Settings
from triton_models.categoriser.metadata import (
    ModelVersionError,
    read_metadata,
    served_version,
    version_dirs,
)
from triton_models.categoriser.model_control import (
    load_versions,
    promote,
    rollback_versions,
    serving_versions,
    triton_model_state,
)


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, help="default: settings")
    parser.add_argument("--config-name", help="Triton config to load with, e.g. 'gpu'")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="versions on disk and what Triton serves")
    load = actions.add_parser("load", help="serve version N (keeps the previous one loaded)")
    load.add_argument("version", type=int)
    actions.add_parser("rollback", help="serve the version below the served one")
    parser.set_defaults(handler=run)


def _settings(args: argparse.Namespace, settings: Settings) -> Settings:
    if args.model_repository is None:
        return settings
    return settings.model_copy(update={"model_repository": args.model_repository})


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    repository = Path(settings.model_repository)
    loaded = set(serving_versions(repository))
    served = served_version(repository) if version_dirs(repository) else None
    try:
        states = triton_model_state(settings)
    except Exception as exc:  # Triton not running: list what is on disk anyway
        states = {}
        print(f"(Triton at {settings.triton_http_url} unreachable: {exc})", file=sys.stderr)
    rows = []
    for version, directory in sorted(version_dirs(repository).items()):
        raw = read_metadata(directory).raw
        test = (raw.get("metrics") or {}).get("test") or {}
        rows.append(
            {
                "version": version,
                "created_at": raw.get("created_at", ""),
                "leaf_accuracy": test.get("leaf_accuracy"),
                "data_hash": str(raw.get("training_data_hash", ""))[:12],
                "configured": version in loaded,
                "served": version == served,
                "triton_state": states.get(version, "-"),
            }
        )
    return rows


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(args, settings)
    repository = Path(settings.model_repository)
    try:
        if args.action == "list":
            rows = list_versions(settings)
            if not rows:
                print(f"no categoriser versions in {repository}; run `catstream train`")
                return 0
            print("version  created_at                 test_acc  data_hash     loaded  state")
            for row in rows:
                accuracy = "-" if row["leaf_accuracy"] is None else f"{row['leaf_accuracy']:.3f}"
                mark = "served" if row["served"] else ("yes" if row["configured"] else "no")
                print(
                    f"{row['version']:>7}  {row['created_at']:<25}  {accuracy:>8}  "
                    f"{row['data_hash']:<12}  {mark:<6}  {row['triton_state']}"
                )
            return 0
        if args.action == "load":
            versions = promote(settings, args.version)
        else:
            versions = rollback_versions(repository)
        load_versions(settings, versions, args.config_name)
    except (ModelVersionError, RuntimeError) as exc:
        print(f"catstream model {args.action}: {exc}", file=sys.stderr)
        return 1
    print(f"Triton now serves categoriser version {max(versions)} (loaded: {sorted(versions)})")
    return 0
