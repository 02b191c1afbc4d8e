"""Progress bars that redraw on a terminal only.

A bar redraws many times a second; written to a file or a CI log it becomes
thousands of lines. ``on_terminal(progress)`` is what a bar's ``enabled`` flag
should be: asked for, and stderr is a terminal. Loops that matter when nobody
watches (training epochs) log one line per step instead (``structlog``).
"""

from __future__ import annotations

import sys
from typing import TextIO


def on_terminal(progress: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw a bar: ``progress`` was asked for and the stream is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(progress and callable(isatty) and isatty())
