"""``catstream worker``: the stream worker process.

One process runs the Faust agents (normalise → infer); with ``--sinks`` and
``--api`` it also runs the Milvus and Elasticsearch sinks and the HTTP API, so
the local demo is a single command. In production each role runs as its own
deployment (see deploy/production).
"""

from __future__ import annotations

import argparse
from typing import Any

from catstream.settings import Settings


def register(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument(
        "--instance-id",
        help="worker slot id for static group membership (default CATSTREAM_WORKER_INSTANCE_ID)",
    )
    parser.add_argument(
        "--agents",
        default="normalise,infer",
        help="comma-separated agents to run (normalise, infer); empty for none",
    )
    parser.add_argument("--sinks", action="store_true", help="also run the Milvus and ES sinks")
    parser.add_argument("--api", action="store_true", help="also serve the HTTP API")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    if args.instance_id:
        settings = settings.model_copy(update={"worker_instance_id": args.instance_id})
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    return run_worker(settings, agents=agents, sinks=args.sinks, api=args.api)
