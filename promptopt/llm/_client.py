"""The LLM client: every call goes through LiteLLM model strings.

``LLM("openai/gpt-4o-mini")``, ``LLM("ollama_chat/llama3")`` or the embedded
``LLM("llamacpp/gemma-3-270m")`` all behave the same: a disk cache keyed by the whole
request minus credentials, retries with exponential backoff on transient errors,
bounded concurrency, a shared call budget, and usage accounting. Provider errors
become promptopt exceptions with messages that say what to fix.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from promptopt.errors import (
    AuthenticationError,
    LLMError,
    LLMTimeoutError,
    TransientLLMError,
    UnknownModelError,
)
from promptopt.llm._cache import DiskCache, request_key
from promptopt.llm._usage import Budget, Usage
from promptopt.redact import redact

Messages = list[dict[str, str]]

_litellm_lock = threading.Lock()
_litellm_ready = False


def import_litellm() -> Any:
    """Import LiteLLM lazily, offline, with promptopt's providers registered."""
    global _litellm_ready
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    with _litellm_lock:
        if not _litellm_ready:
            from promptopt.llm._embedded import register_providers

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            register_providers(litellm)
            _litellm_ready = True
    return litellm


def _map_error(exc: Exception, model: str, api_key: str | None = None) -> LLMError:
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


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LLM:
    """A LiteLLM model with caching, retries, budget and usage accounting.

    Args:
        model: LiteLLM model string (``provider/model``), or ``llamacpp/<name or .gguf path>``
            for the embedded llama.cpp provider.
        temperature: Default sampling temperature.
        max_tokens: Default completion length.
        cache: A :class:`DiskCache`, or None to disable caching.
        usage: Shared :class:`Usage` to add to (a new one by default).
        budget: Shared :class:`Budget` charged for every request (cache hits too).
        max_retries: Retries on transient errors (rate limits, 5xx, timeouts).
        concurrency: Maximum parallel requests (the embedded model runs one at a time).
        timeout: Seconds per request.
        api_base: Provider URL (e.g. a vLLM server); not a credential, part of the key.
        api_key: Credential; never stored in the cache key, the cache or the study.
        backoff: First retry delay in seconds (doubles each retry, with jitter).
    """

    def __init__(
        self,
        model: str,
        *,
        temperature: float = 0.0,
        max_tokens: int = 64,
        cache: DiskCache | None = None,
        usage: Usage | None = None,
        budget: Budget | None = None,
        max_retries: int = 4,
        concurrency: int = 4,
        timeout: float = 120.0,
        api_base: str | None = None,
        api_key: str | None = None,
        backoff: float = 1.0,
    ) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.cache = cache
        self.usage = usage if usage is not None else Usage()
        self.budget = budget
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.timeout = timeout
        self.api_base = api_base
        self._api_key = api_key
        self.backoff = backoff
        self.on_request: Any = None  # called after each request (progress bars)

    def __repr__(self) -> str:
        return f"LLM({self.model!r})"

    @property
    def provider(self) -> str:
        """The LiteLLM provider prefix (``openai``, ``llamacpp``, ...)."""
        return self.model.split("/", 1)[0] if "/" in self.model else ""

    @property
    def is_chat(self) -> bool:
        """Whether prompts should be rendered as chat messages (False for base models)."""
        if self.provider == "llamacpp":
            from promptopt.llm._embedded import is_chat_model

            return is_chat_model(self.model.split("/", 1)[1])
        return True

    def _request(
        self,
        messages: Messages,
        temperature: float | None,
        max_tokens: int | None,
        seed: int | None,
        stop: Sequence[str] | None,
    ) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature if temperature is None else temperature,
            "max_tokens": self.max_tokens if max_tokens is None else max_tokens,
        }
        if seed is not None:
            req["seed"] = seed
        if stop:
            req["stop"] = list(stop)
        if self.api_base:
            req["api_base"] = self.api_base
        return req

    def complete(
        self,
        messages: Messages,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        charge: bool = True,
    ) -> str:
        """One completion (charged to the budget unless ``charge=False``)."""
        return self.complete_many(
            [messages], temperature=temperature, max_tokens=max_tokens, seeds=[seed],
            stop=stop, charge=charge,
        )[0]

    def complete_many(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seeds: Sequence[int | None] | None = None,
        stop: Sequence[str] | None = None,
        charge: bool = True,
    ) -> list[str]:
        """Complete several requests; the budget is charged for all of them up front.

        Raises:
            BudgetExhausted: if the whole batch does not fit the budget (nothing is spent).
            LLMError: if a request fails for good.
        """
        if charge and self.budget is not None:
            self.budget.charge(len(batch))
        seeds = list(seeds) if seeds is not None else [None] * len(batch)
        requests = [
            self._request(list(m), temperature, max_tokens, s, stop)
            for m, s in zip(batch, seeds, strict=True)
        ]
        workers = 1 if self.provider in {"llamacpp", "fake"} else max(1, self.concurrency)
        if workers == 1 or len(requests) == 1:
            return [self._call(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(workers, len(requests))) as pool:
            return list(pool.map(self._call, requests))

    def _call(self, request: dict[str, Any]) -> str:
        text = self._lookup_or_call(request)
        if self.on_request is not None:
            self.on_request()
        return text

    def _lookup_or_call(self, request: dict[str, Any]) -> str:
        key = request_key(request)
        if self.cache is not None:
            hit = self.cache.get_json(key)
            if hit is not None:
                self.usage.add(
                    cached=True,
                    prompt_tokens=hit.get("prompt_tokens", 0),
                    completion_tokens=hit.get("completion_tokens", 0),
                )
                return str(hit["text"])
        result = self._call_provider(request)
        self.usage.add(
            cached=False,
            prompt_tokens=result["prompt_tokens"],
            completion_tokens=result["completion_tokens"],
            cost=result["cost"],
        )
        if self.cache is not None:
            self.cache.set_json(key, result)
        return str(result["text"])

    def _call_provider(self, request: dict[str, Any]) -> dict[str, Any]:
        litellm = import_litellm()
        kwargs = dict(request)
        kwargs["timeout"] = self.timeout
        kwargs["drop_params"] = True
        kwargs["num_retries"] = 0
        if self._api_key:
            kwargs["api_key"] = self._api_key
        attempt = 0
        while True:
            try:
                response = litellm.completion(**kwargs)
                break
            except Exception as exc:  # provider SDKs raise many types
                error = _map_error(exc, self.model, self._api_key)
                retryable = isinstance(error, (TransientLLMError, LLMTimeoutError))
                if not retryable or attempt >= self.max_retries:
                    self.usage.add(cached=False, failed=True)
                    if retryable:
                        raise type(error)(
                            f"{error} (gave up after {attempt + 1} attempts)"
                        ) from exc
                    raise error from exc
                wait = _retry_after(exc)
                if wait is None:
                    wait = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
                time.sleep(min(wait, 60.0))
                attempt += 1
        choice = response.choices[0]
        text = (getattr(choice, "message", None) and choice.message.content) or ""
        usage = getattr(response, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unknown price: report 0 rather than fail the call
            cost = 0.0
        return {
            "text": text,
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "cost": cost,
        }
