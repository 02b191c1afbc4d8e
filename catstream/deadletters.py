"""The one error path every stage uses: what happens to a message whose handling failed.

Normalise, infer and both sinks hand each failure to a ``DeadLetterPolicy``
(the shape of arroyo's ``InvalidMessage`` / ``DlqPolicy`` / ``DlqLimit``):

* ``RecoverableError`` (service down, 429, timeout) → ``Disposition.RETRY``:
  back off (``catstream.backoff``) and try again; never commit past it.
* ``InvalidMessage`` (the message's fault) → its dead letter, with the reason.
* any other exception while handling one message → a dead letter with error
  class ``ProcessingBug`` and the traceback's last frame. It is counted by the
  stage's ``DeadLetterGuard`` (a ratio over a window plus a maximum in a row);
  when that trips, ``DeadLetterLimitExceeded`` is raised *instead of* writing
  the letter, the message is left uncommitted, and the stage asks
  ``catstream.liveness`` to stop the process (it exits non-zero).

A dead letter keeps the original bytes up to ``deadletter_original_max_bytes``
(plus the full length and sha256), so it always fits the topic. Its delivery
is confirmed before the stage commits the offset it replaces: the agents await
the send, the sinks call ``DeadLetterProducer.confirm()`` before committing.
"""

from __future__ import annotations

import base64
import hashlib
import re
import traceback
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from catstream.errors import DeadLetterLimitExceeded, InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import DEAD_LETTERS
from catstream.settings import Settings
from schemas.events import DeadLetter

PROCESSING_BUG = "ProcessingBug"
MAX_KEY_BYTES = 4096
MAX_REASON_CHARS = 4000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """Where a failed message came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> SourceMessage:
        """From a faust ``Message`` or a ``workers.sink.SinkMessage`` (same attribute names)."""
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


class Disposition(Enum):
    RETRY = "retry"  # back off and try the same message again
    DEAD_LETTER = "dead_letter"  # write its dead letter, then move on


def disposition(exc: BaseException) -> Disposition:
    """What every stage does with a message whose handling raised ``exc``."""
    return Disposition.RETRY if isinstance(exc, RecoverableError) else Disposition.DEAD_LETTER


def readable(text: str) -> str:
    """``text`` that any UTF-8 encoder accepts (lone surrogates become U+FFFD)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def processing_bug(exc: BaseException) -> InvalidMessage:
    """The dead-letter reason for an exception nobody expected: names where it happened."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    detail = readable(str(exc))[:500]
    return InvalidMessage(
        f"catstream failed on this message with {type(exc).__name__}: {detail}{where}. "
        "This is a catstream bug, not (only) bad input: report it with this dead letter; "
        "after the fix, replay it with `catstream deadletter replay --reason ProcessingBug`",
        error_class=PROCESSING_BUG,
    )


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
    max_original_bytes: int = 700_000,
) -> DeadLetter:
    """The dead letter for one message; an original over ``max_original_bytes`` is cut."""
    source = SourceMessage(topic, partition, offset, key, value)
    value = source.value or b""
    key = source.key
    truncated = len(value) > max_original_bytes or (key is not None and len(key) > MAX_KEY_BYTES)
    kept_key = key[:MAX_KEY_BYTES] if key is not None else None
    return DeadLetter(
        original_b64=base64.b64encode(value[:max_original_bytes]).decode("ascii"),
        original_length=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
        original_truncated=truncated,
        key_b64=base64.b64encode(kept_key).decode("ascii") if kept_key is not None else None,
        source_topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        stage=stage,
        error_class=error_class,
        reason=readable(reason)[:MAX_REASON_CHARS] or error_class,
    )


@dataclass(frozen=True)
class DlqLimit:
    """When the ``ProcessingBug`` letters of one stage mean a bad deploy, not bad input."""

    max_invalid_ratio: float
    window: int
    max_consecutive_count: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DlqLimit:
        return cls(
            settings.deadletter_max_ratio,
            settings.deadletter_window,
            settings.deadletter_max_consecutive,
        )


@dataclass
class DeadLetterGuard:
    """Counts one stage's ``ProcessingBug`` letters against its ``DlqLimit``.

    Invalid input does not count: garbage is dead-lettered forever. Our own code
    failing on most messages is a bad deploy: stop loudly instead of routing the
    whole stream to the dead-letter topic.
    """

    stage: str
    limit: DlqLimit
    _outcomes: deque[bool] = field(init=False)
    _in_a_row: int = 0

    def __post_init__(self) -> None:
        self._outcomes = deque(maxlen=max(1, self.limit.window))

    def record_ok(self) -> None:
        self._outcomes.append(False)
        self._in_a_row = 0

    def record_bug(self) -> None:
        """Count one ``ProcessingBug``; raises ``DeadLetterLimitExceeded`` if it is one too many.

        The message that trips the guard is not counted as dead-lettered: it stays
        uncommitted and is handled again after the restart.
        """
        in_a_row = self._in_a_row + 1
        outcomes = [*self._outcomes, True][-max(1, self.limit.window) :]
        ratio = sum(outcomes) / len(outcomes)
        if in_a_row > self.limit.max_consecutive_count:
            raise DeadLetterLimitExceeded(
                f"{self.stage}: {in_a_row} messages in a row failed with ProcessingBug "
                f"(limit {self.limit.max_consecutive_count}). {_WHAT_TO_DO}"
            )
        if len(outcomes) >= self.limit.window and ratio > self.limit.max_invalid_ratio:
            raise DeadLetterLimitExceeded(
                f"{self.stage}: {ratio:.0%} of the last {len(outcomes)} messages failed with "
                f"ProcessingBug (limit {self.limit.max_invalid_ratio:.0%}). {_WHAT_TO_DO}"
            )
        self._outcomes.append(True)
        self._in_a_row = in_a_row


_WHAT_TO_DO = (
    "Stopping the process so it is restarted and looked at: read the ProcessingBug "
    "reasons (`catstream deadletter list`), fix or roll back the deploy, then replay them "
    "(`catstream deadletter replay --reason ProcessingBug`). Raise "
    "CATSTREAM_DEADLETTER_MAX_RATIO / CATSTREAM_DEADLETTER_MAX_CONSECUTIVE only if this "
    "failure rate is expected."
)


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter ready to send: Kafka key and value, and what it counts as."""

    key: bytes | None
    value: bytes
    error_class: str


class DeadLetterPolicy:
    """The decision for one stage: a failed message → its dead letter (or a stop)."""

    def __init__(self, stage: str, settings: Settings, guard: DeadLetterGuard | None = None):
        self.stage = stage
        self.settings = settings
        self.guard = guard or DeadLetterGuard(stage, DlqLimit.from_settings(settings))
        self.log = get_logger(__name__, stage=stage)

    def ok(self) -> None:
        """A message was handled without a dead letter."""
        self.guard.record_ok()

    def letter(self, source: SourceMessage, exc: BaseException) -> Letter:
        """The dead letter for ``source``; raises ``DeadLetterLimitExceeded`` when the guard trips.

        ``exc`` must not be recoverable: those are retried (``disposition``).
        """
        if isinstance(exc, RecoverableError):
            raise TypeError("a RecoverableError is retried, never dead-lettered") from exc
        if isinstance(exc, InvalidMessage):
            self.guard.record_ok()
            error = exc
            self.log.warning(
                "dead_lettering",
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                error=error.error_class,
                reason=readable(error.reason)[:300],
            )
        else:
            self.guard.record_bug()
            error = processing_bug(exc)
            self.log.error(
                "processing_bug",
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                exc_info=exc,
            )
        event = dead_letter_event(
            value=source.value,
            key=source.key,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            stage=self.stage,
            error_class=error.error_class,
            reason=error.reason,
            max_original_bytes=self.settings.deadletter_original_max_bytes,
        )
        key = source.key[:MAX_KEY_BYTES] if source.key is not None else None
        return Letter(key, event.model_dump_json().encode("utf-8"), error.error_class)

    def delivered(self, letter: Letter) -> None:
        """``letter`` was acknowledged by Kafka."""
        DEAD_LETTERS.labels(stage=self.stage, error=letter.error_class).inc()


class DeadLetterProducer:
    """Dead letters for a blocking (confluent-kafka) stage, confirmed before each commit."""

    def __init__(self, policy: DeadLetterPolicy, producer: Any, topic: str) -> None:
        self.policy = policy
        self.producer = producer
        self.topic = topic
        self._unconfirmed: dict[int, Letter] = {}
        self._failed: dict[int, str] = {}

    def publish(self, source: SourceMessage, exc: BaseException) -> None:
        """Queue the dead letter of ``source`` (may raise ``DeadLetterLimitExceeded``)."""
        letter = self.policy.letter(source, exc)
        self._unconfirmed[id(letter)] = letter
        self._produce(letter)

    @property
    def pending(self) -> int:
        return len(self._unconfirmed)

    def confirm(self, timeout_s: float = 30.0) -> None:
        """Return once every queued dead letter is acknowledged; else ``RecoverableError``.

        Letters Kafka refused or did not acknowledge in time stay queued and are sent
        again on the next call: the caller must not commit until this returns.
        """
        for key in list(self._failed):
            del self._failed[key]
            self._produce(self._unconfirmed[key])
        if not self._unconfirmed:
            return
        self.producer.flush(timeout_s)
        if self._unconfirmed:
            error = next(iter(self._failed.values()), "not acknowledged in time")
            raise RecoverableError(
                "kafka",
                f"{len(self._unconfirmed)} dead letters not delivered to {self.topic} "
                f"({error}); the offsets they replace stay uncommitted until they are",
            )

    def _produce(self, letter: Letter) -> None:
        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                self._failed[id(letter)] = str(error)
            elif self._unconfirmed.pop(id(letter), None) is not None:
                self.policy.delivered(letter)

        try:
            self.producer.produce(
                self.topic, key=letter.key, value=letter.value, on_delivery=on_delivery
            )
        except BufferError:
            self.producer.poll(1.0)
            self._failed[id(letter)] = "the local producer queue is full"
        except Exception as exc:  # e.g. MSG_SIZE_TOO_LARGE, raised at produce time
            self._failed[id(letter)] = f"{type(exc).__name__}: {exc}"


class DeadLetterTopic:
    """Dead letters for an asyncio (Faust) stage: each is awaited until Kafka acknowledges it."""

    def __init__(self, policy: DeadLetterPolicy, topic: Any) -> None:
        self.policy = policy
        self.topic = topic

    async def send(self, source: SourceMessage, exc: BaseException) -> None:
        """Write the dead letter of ``source`` (may raise ``DeadLetterLimitExceeded``)."""
        from catstream.backoff import retry_async

        letter = self.policy.letter(source, exc)

        async def deliver() -> None:
            from aiokafka.errors import KafkaError

            try:
                await (await self.topic.send(key=letter.key, value=letter.value))
            except KafkaError as error:
                raise RecoverableError("kafka", f"dead letter not delivered: {error}") from error

        await retry_async(deliver, dependency="kafka")
        self.policy.delivered(letter)
