"""The wait after empty fetches: doubles per empty fetch in a row, capped, reset by records."""

from __future__ import annotations

from catstream.idle_polling import IdlePolling


def test_the_wait_doubles_up_to_the_cap_and_records_reset_it() -> None:
    idle = IdlePolling(max_delay_s=0.05)
    waits = [idle.fetched(False) for _ in range(6)]
    assert waits == [0.005, 0.01, 0.02, 0.04, 0.05, 0.05]
    assert idle.fetched(True) == 0.0
    assert idle.fetched(False) == 0.005


def test_a_zero_cap_turns_waiting_off() -> None:
    idle = IdlePolling(max_delay_s=0.0)
    assert [idle.fetched(False) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_an_empty_fetch_the_broker_held_asks_for_no_wait() -> None:
    # Kafka holds an empty fetch for fetch.max.wait.ms: waiting again after it
    # would only delay what arrives meanwhile. A broker answering at once is
    # still backed off.
    idle = IdlePolling(max_delay_s=0.5, held_s_min=1.2)
    assert [idle.fetched(False, took_s=0.001) for _ in range(3)] == [0.005, 0.01, 0.02]
    assert idle.fetched(False, took_s=1.5) == 0.0
    assert idle.fetched(False, took_s=0.001) == 0.005, "a held fetch resets the backoff"
