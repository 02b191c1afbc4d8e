"""``catstream stack up | down | status | start SERVICE | stop SERVICE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from catstream import redaction
from catstream.settings import Settings
from deploy.stack import ServiceStatus, Stack, StackError, StackTimeouts


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--home", type=Path, help="stack data dir (default: settings.home)")
    actions = parser.add_subparsers(dest="stack_action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start the stack (idempotent) and write stack.env")
    up.add_argument(
        "--milvus",
        choices=("lite", "standalone"),
        default=None,
        help="milvus-lite server (default) or the standalone milvus package",
    )
    up.add_argument(
        "--models",
        help="comma-separated Triton models to load "
        "(default: every model with a version directory)",
    )
    up.add_argument(
        "--triton-timeout",
        type=float,
        default=StackTimeouts.triton_s,
        help="seconds to wait for Triton to load its models",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=StackTimeouts.noida_s,
        help="seconds to wait for noida-db and Milvus",
    )
    up.set_defaults(handler=_up)

    actions.add_parser("down", help="stop everything the stack started").set_defaults(handler=_down)
    actions.add_parser("status", help="each service: up/down, URL, PID, RSS").set_defaults(
        handler=_status
    )
    for verb, handler in (("start", _start), ("stop", _stop)):
        one = actions.add_parser(verb, help=f"{verb} one service (keeps its ports)")
        one.add_argument("service", choices=("noida", "triton", "milvus", "kafka", "elasticsearch"))
        one.set_defaults(handler=handler)


def _stack(args: argparse.Namespace, settings: Settings) -> Stack:
    timeouts = StackTimeouts(
        noida_s=getattr(args, "timeout", StackTimeouts.noida_s),
        milvus_s=getattr(args, "timeout", StackTimeouts.milvus_s),
        triton_s=getattr(args, "triton_timeout", StackTimeouts.triton_s),
    )
    models = getattr(args, "models", None)
    return Stack(
        args.home,
        settings=settings,
        milvus_mode=getattr(args, "milvus", None),
        triton_models=[m for m in models.split(",") if m] if models else None,
        timeouts=timeouts,
    )


def _up(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    print(f"starting the local stack under {stack.home} (Triton may take a minute) ...")
    try:
        report = stack.up()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report.already_running:
        print("the stack is already up and healthy; nothing to do")
    else:
        print(f"stack up in {report.seconds:.1f} s; URLs written to {stack.env_file}")
    _print_table(report.services)
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stack = _stack(args, settings)
    stopped = stack.down()
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running under {stack.home}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    statuses = _stack(args, settings).status()
    _print_table(statuses)
    return 0 if all(s.up for s in statuses) else 1


def _start(args: argparse.Namespace, settings: Settings) -> int:
    try:
        status = _stack(args, settings).start_service(args.service)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_table([status])
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    try:
        _stack(args, settings).stop_service(args.service)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stopped {args.service}; `catstream stack start {args.service}` brings it back")
    return 0


def redact(text: str) -> str:
    """Drop ``user:password@`` from URLs, and any configured secret: status output
    never shows a credential."""
    return redaction.redact(text)


def format_table(statuses: list[ServiceStatus]) -> str:
    lines = [f"{'SERVICE':<8} {'STATE':<5} {'PID':>8} {'RSS MiB':>8}  URLS"]
    for s in statuses:
        urls = "  ".join(f"{role}={redact(url)}" for role, url in s.urls.items())
        pid = str(s.pid) if s.pid else "-"
        rss = f"{s.rss_bytes / 2**20:.0f}" if s.rss_bytes else "-"
        lines.append(f"{s.name:<8} {'up' if s.up else 'down':<5} {pid:>8} {rss:>8}  {urls}")
        if s.detail:
            lines.append(f"{'':<8} {redact(s.detail)} (log: {s.log})")
    return "\n".join(lines)


def _print_table(statuses: list[ServiceStatus]) -> None:
    print(format_table(statuses))
