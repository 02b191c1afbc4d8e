"""Building dead-letter events and guarding against dead-lettering everything.

Both the Faust agents and the sink workers use these, so a dead letter looks
the same wherever it was produced and ``catstream deadletter replay`` can send
any of them back to their source topic.
"""

from __future__ import annotations

import base64
from collections import deque

from catstream.errors import DeadLetterLimitExceeded
from schemas.events import DeadLetter


def dead_letter_event(
    *,
    value: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    error_class: str,
    reason: str,
) -> DeadLetter:
    """The dead letter for one message, carrying its original bytes untouched."""
    return DeadLetter(
        original_b64=base64.b64encode(value or b"").decode("ascii"),
        key_b64=base64.b64encode(key).decode("ascii") if key is not None else None,
        source_topic=topic,
        partition=partition,
        offset=offset,
        stage=stage,
        error_class=error_class,
        reason=reason,
    )


class DeadLetterGuard:
    """Stops a stage when too many of the last ``window`` messages were dead-lettered.

    A bad deploy (wrong schema version, broken normaliser) would otherwise quietly
    route the whole stream to the dead-letter topic.
    """

    def __init__(self, max_ratio: float, window: int) -> None:
        self.max_ratio = max_ratio
        self.window = window
        self._outcomes: deque[bool] = deque(maxlen=window)

    def record(self, dead_lettered: bool) -> None:
        self._outcomes.append(dead_lettered)
        if len(self._outcomes) < self.window:
            return
        ratio = sum(self._outcomes) / len(self._outcomes)
        if ratio > self.max_ratio:
            raise DeadLetterLimitExceeded(
                f"{ratio:.0%} of the last {self.window} messages were dead-lettered "
                f"(limit {self.max_ratio:.0%}). Check products.deadletter for the reasons, "
                "fix the producer or the deploy, then restart; raise "
                "CATSTREAM_DEADLETTER_MAX_RATIO only if this input is expected."
            )
