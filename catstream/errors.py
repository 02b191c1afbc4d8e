"""The two kinds of error every stage distinguishes.

* ``InvalidMessage``: the event itself is wrong. Retrying cannot help, so it goes
  to the dead-letter topic with a reason and the stage moves on.
* ``RecoverableError``: a dependency (Triton, Milvus, Elasticsearch, Kafka) is
  unavailable or pushing back. Back off and retry; never commit past the event.

Any other exception while handling one message is a bug of ours: it becomes a
``ProcessingBug`` dead letter. ``catstream.deadletters`` applies these rules for
every stage.
"""

from __future__ import annotations


class CatstreamError(Exception):
    """Root of catstream's own exceptions."""


class InvalidMessage(CatstreamError):
    """The message cannot be processed as it is; ``reason`` says what to fix."""

    def __init__(self, reason: str, *, error_class: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_class = error_class or type(self).__name__


class RecoverableError(CatstreamError):
    """A dependency failed in a way that retrying later can fix."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency
        self.detail = detail


class DeadLetterLimitExceeded(CatstreamError):
    """Too many ``ProcessingBug`` letters: stop the process instead of dead-lettering everything."""
