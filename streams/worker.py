"""Assembling and running the worker: Faust app, agents, and optional extras."""

from __future__ import annotations

import faust

from catstream.liveness import EXIT_GUARD_TRIPPED, LIVENESS
from catstream.logs import get_logger
from catstream.metrics_endpoint import serve_metrics
from catstream.settings import Settings
from streams.agents.normalise import register_normalise_agent
from streams.app import create_app
from streams.topics import create_topics

log = get_logger(__name__)


def build_app(settings: Settings, agents: list[str]) -> faust.App:
    app = create_app(settings, runs_agents=bool({"normalise", "infer", "match"} & set(agents)))
    if "normalise" in agents:
        register_normalise_agent(app, settings)
    if "infer" in agents:
        from streams.agents.infer import register_infer_agent

        register_infer_agent(app, settings)
    if "match" in agents:  # same-product matching (issue 12)
        from streams.agents.match import register_match_agent

        register_match_agent(app, settings)
    return app


def run_worker(settings: Settings, *, agents: list[str], sinks: bool, api: bool) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    create_topics(settings)
    app = build_app(settings, agents)
    if sinks:
        from workers.worker_services import attach_sinks

        attach_sinks(app, settings)
    if api:
        from streams.review_server import review_image_fetcher
        from workers.worker_services import attach_api

        attach_api(app, settings, images=review_image_fetcher(settings))
    serve_metrics(settings, "worker")
    log.info(
        "worker_starting",
        agents=agents,
        sinks=sinks,
        api=api,
        instance=settings.worker_instance_id,
        kafka=settings.kafka_bootstrap,
    )
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover (execute_from_commandline always exits)
        code = 0
    if LIVENESS.stopping:
        # A dead-letter guard (or a dead agent task) stopped the worker: exit non-zero so
        # the supervisor restarts it and the unacknowledged messages are handled again.
        log.error("worker_stopped_unfit", reasons=LIVENESS.stopping, exit_code=EXIT_GUARD_TRIPPED)
        return EXIT_GUARD_TRIPPED
    return code
