"""Provider failures as promptopt exceptions, and the wait a rate-limited provider asks for.

LiteLLM raises many exception types (its own, the provider SDKs', ours wrapped);
:func:`map_provider_error` turns each into the :mod:`promptopt.errors` class that
says what to fix (a key, a model name) or whether to retry; its message never
carries the key. :func:`retry_after` reads ``Retry-After`` headers.
"""

from __future__ import annotations

import email.utils
import time

from promptopt.errors import (
    AuthenticationError,
    LLMError,
    LLMTimeoutError,
    TransientLLMError,
    UnknownModelError,
)
from promptopt.redact import redact


def map_provider_error(exc: Exception, model: str, api_key: str | None = None) -> LLMError:
    """Turn a LiteLLM/provider exception into a promptopt exception (credentials masked)."""
    cause: BaseException | None = exc
    while cause is not None:  # LiteLLM wraps our providers' own errors
        if isinstance(cause, LLMError):
            return cause
        cause = cause.__cause__ or cause.__context__
    name = type(exc).__name__
    text = redact(str(exc), (api_key or "",))  # providers quote keys and URLs in errors
    lowered = text.lower()
    if name == "AuthenticationError" or "missing credentials" in lowered or (
        "api_key" in lowered and "must be set" in lowered
    ):
        return AuthenticationError(
            f"{model}: missing or invalid API key ({text.splitlines()[0][:200]}). Set the "
            "provider's key in the environment (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)."
        )
    if name in {"Timeout", "APITimeoutError"} or "timed out" in text.lower():
        return LLMTimeoutError(f"{model}: the provider did not answer in time ({text[:200]})")
    if name in {
        "RateLimitError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "APIError",
    } or "Retry-After" in text:
        return TransientLLMError(f"{model}: {name}: {text[:300]}")
    if name in {"NotFoundError", "BadRequestError"} and (
        "LLM Provider NOT provided" in text or "not found" in text.lower()
        or "does not exist" in text.lower()
    ):
        return UnknownModelError(
            f"unknown model {model!r}: {text.splitlines()[0][:300]}. Use a LiteLLM model string "
            "such as 'openai/gpt-4o-mini', 'ollama_chat/llama3' or an embedded model "
            "('promptopt list' shows them)."
        )
    return LLMError(f"{model}: {name}: {text[:300]}")


def retry_after(exc: Exception) -> float | None:
    """The wait a rate-limited provider asked for (``Retry-After``), in seconds, or None.

    LiteLLM keeps the provider's headers in ``litellm_response_headers``; the SDK's own
    errors have them on ``response``. Seconds, milliseconds (``retry-after-ms``) and
    HTTP dates are understood.
    """
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if not headers:
            continue
        try:
            if headers.get("retry-after-ms") is not None:
                return max(0.0, float(headers["retry-after-ms"]) / 1000)
            value = headers.get("retry-after")
            if value is None:
                continue
            try:
                return max(0.0, float(value))
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None
