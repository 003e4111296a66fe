"""Keeping credentials out of everything promptopt writes: storage, reports and logs.

API keys come from the provider's environment variables (``OPENAI_API_KEY``, ...)
and reach LiteLLM only. What could still carry one is text promptopt passes on: a
provider URL with a key in its query or a password in it, or a provider's error
message quoting the key. :func:`redact` masks both kinds: the values of environment
variables whose names look secret, and the credentials inside URLs. The tracker
runs it over everything it stores (:func:`scrub`: nested settings too); the evaluator
over the errors it records (:func:`scrub_text`: key-shaped strings as well); the CLI
over its error messages and (through :func:`redact_log_records`) every log record the
process writes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"(api[_-]?key|_key$|secret|token|password|passwd|credential)", re.I)
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)", re.I)
_URL_QUERY_SECRET = re.compile(
    r"(?P<keep>[?&;][\w.-]*(?:key|token|secret|password|passwd|pwd|sig|signature|auth)[\w.-]*=)"
    r"[^&#;\s\"'<>]+",
    re.I,
)
_MIN_SECRET = 8  # shorter values (e.g. "1", "true") would mask ordinary text


def secret_values(environ: Any = None) -> list[str]:
    """Values of environment variables whose names look like credentials, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` with credentials masked: secret environment values and URL credentials.

    Args:
        text: Any text (a setting, an error message, a log line).
        extra: Further secret values to mask (e.g. an ``api_key`` argument).
    """
    for value in (*secret_values(), *(e for e in extra if e and len(e) >= _MIN_SECRET)):
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<keep>{MASK}", text)
    if "=" in text:
        text = _URL_QUERY_SECRET.sub(rf"\g<keep>{MASK}", text)
    return text


_SECRET_SETTING = re.compile(r"(api[_-]?key|secret|token(?!s)|password)", re.I)
"""Setting names whose values are withheld; ``token`` but not ``prompt_tokens`` (a count)."""
_KEY_SHAPED = re.compile(
    r"(?i)\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{6,}|(?<=bearer )[A-Za-z0-9._\-]{8,}"
    r"|(?<=api[_-]key=)[^\s&'\",]+|(?<=api_key': ')[^']+"
)


def scrub(value: Any) -> Any:
    """Nested settings with the values under secret-looking keys withheld and every
    string passed through :func:`redact`."""
    if isinstance(value, Mapping):
        return {k: (MASK if _SECRET_SETTING.search(str(k)) and v else scrub(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def scrub_text(text: str) -> str:
    """An error message with :func:`redact` applied and key-shaped strings masked too
    (``sk-...``, bearer tokens, ``api_key=...``): a provider may quote a key that is
    not in this process's environment."""
    return _KEY_SHAPED.sub(MASK, redact(text))


def is_redacted(value: Any) -> bool:
    """Whether a stored string had credentials masked by :func:`redact`."""
    return isinstance(value, str) and MASK in value and redact(value) == value


def redact_log_records() -> None:
    """Mask credentials in every log record this process creates from now on.

    Installed by the CLI (an application may choose its own logging policy): third-
    party libraries log request URLs and headers at DEBUG level.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "_promptopt_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    factory._promptopt_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
