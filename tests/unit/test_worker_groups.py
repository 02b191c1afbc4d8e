"""A worker that runs no agents stays out of the agents' consumer group."""

from __future__ import annotations

from pathlib import Path

from catstream.settings import Settings
from streams.worker import build_app


def test_a_process_without_agents_joins_a_group_of_its_own(tmp_path: Path) -> None:
    # Before: `catstream worker --agents "" --sinks` (deploy/production/sinks.yaml) joined
    # the agents' group; its start triggered an IllegalGenerationError rebalance and the
    # agents' stream never delivered again.
    settings = Settings(home=tmp_path)
    agents = build_app(settings, ["normalise", "infer"])
    alone = build_app(settings, [])
    assert agents.conf.id == settings.app_id  # the agents' group (and changelog names) as before
    assert alone.conf.id != agents.conf.id
    assert alone.conf.consumer_group_instance_id != agents.conf.consumer_group_instance_id
    assert not alone.agents
