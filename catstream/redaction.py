"""Secrets never leave the process in text: logs, error bodies, ``stack status``.

``redact(text)`` removes, wherever they appear in ``text``:

* the ``user:password@`` part of any URL (``https://u:p@host`` → ``https://***@host``);
* every secret value a ``Settings`` object holds (its ``SecretStr`` fields and the
  passwords inside its URL fields), which ``Settings`` registers here when it is
  built (``remember``), so a secret quoted without its URL is caught too.

``redact_value`` applies the same to nested log values, and replaces whatever
is stored under a key that names a secret (``password``, ``token``, ...).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Scheme, then userinfo up to the last "@" before the host (a password may hold "@").
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#@]*(?:@[^\s/?#@]*)*@")
# A key with a secret's name as one of its ``_``-separated words (``sasl_password``,
# ``token``, ``api_key``), not merely inside a word (``tokens``, ``tokenizer``).
_SECRET_KEY = re.compile(
    r"(^|_)(pass|password|passwd|secret|token|api_?key|authori[sz]ation|credentials?)(_|$)",
    re.IGNORECASE,
)
# Shorter values are too likely to be ordinary words to mask everywhere.
MIN_SECRET_CHARS = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def remember(values: Iterable[str | None]) -> None:
    """Mask these values wherever they appear from now on."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)


def redact(text: str) -> str:
    """``text`` without URL credentials or any remembered secret."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_value(value: Any, key: str = "") -> Any:
    """``value`` (a log field) with secrets masked, through dicts, lists and tuples."""
    if key and is_secret_key(key) and value is not None and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def url_password(url: str) -> str | None:
    """The password inside ``url``'s userinfo, if it has one."""
    match = _URL_USERINFO.search(url)
    if match is None:
        return None
    userinfo = match.group(0)[len(match.group("scheme")) : -1]
    _, sep, password = userinfo.partition(":")
    return password if sep else None
