"""The LLM client: every call goes through LiteLLM model strings.

``LLM("openai/gpt-4o-mini")``, ``LLM("ollama_chat/llama3")`` or the embedded
``LLM("llamacpp/gemma-3-270m")`` all behave the same: a disk cache keyed by the whole
request minus credentials, retries with exponential backoff on transient errors,
bounded concurrency, a shared call budget, and usage accounting. Provider errors
become promptopt exceptions with messages that say what to fix.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import promptopt.llm._embedded  # noqa: F401 - registers the llamacpp provider
from promptopt.errors import (
    LLMError,
    LLMTimeoutError,
    PromptoptError,
    TransientLLMError,
    check_stop,
)
from promptopt.llm._cache import DiskCache, request_key
from promptopt.llm._errors import map_provider_error, retry_after
from promptopt.llm._litellm import Messages, import_litellm, response_usage
from promptopt.llm._logprobs import TOP_LOGPROBS, first_token_top, read_top_logprobs
from promptopt.llm._providers import in_process_provider
from promptopt.llm._usage import Budget, Usage

T = TypeVar("T")
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONCURRENCY = 4
"""Seconds an LLM request may take before it counts as timed out (and is retried)."""

CHARS_PER_TOKEN_MAX = 16
"""Cut a completion longer than this many characters per requested token."""


def cut_to_max_tokens(text: str, max_tokens: int | None) -> str:
    """``text`` cut to about ``max_tokens`` tokens, for providers that ignore the limit.

    A completion keeps at most ``max_tokens`` whitespace-separated words and
    ``CHARS_PER_TOKEN_MAX * max_tokens`` characters; a provider that honours
    ``max_tokens`` never reaches either bound, so its answers pass unchanged.
    """
    if not max_tokens or max_tokens <= 0:
        return text
    limit = CHARS_PER_TOKEN_MAX * max_tokens
    cut = text if len(text) <= limit else text[:limit]
    words = 0
    for match in re.finditer(r"\S+", cut):
        words += 1
        if words > max_tokens:
            return cut[: match.start()].rstrip()
    return cut


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
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
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
        local = in_process_provider(self.provider)
        if local is not None and local.is_chat is not None:
            return local.is_chat(self.model.split("/", 1)[1])
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

        Each request counts once in the budget however many attempts it takes: a
        transient error is retried up to ``max_retries`` times (after the provider's
        ``Retry-After`` or with exponential backoff), counted in ``usage.retries``.

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
        return self._map(self._call, requests)

    def label_logprobs(
        self,
        prompts: Sequence[Messages],
        labels: Sequence[str],
        *,
        charge: bool = True,
        top_logprobs: int | None = None,
    ) -> list[dict[str, float]]:
        """``{label: logprob}`` of each label's first token right after each prompt.

        One request per prompt (charged, cached on disk under a key that holds the
        labels, counted and retried like a completion). In-process providers compute
        it exactly; LiteLLM providers are asked for one token at temperature 0 with
        ``top_logprobs`` alternatives (default :data:`TOP_LOGPROBS`), read by
        :func:`~promptopt.llm._logprobs.read_top_logprobs`.

        Raises:
            ValueError: fewer than two labels, or repeated ones.
            BudgetExhausted: if the prompts do not fit the budget (nothing is spent).
            LLMError: if the model returns no log-probabilities or a request fails.
        """
        labels = list(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"label_logprobs needs two or more distinct labels, got {labels}")
        if charge and self.budget is not None:
            self.budget.charge(len(prompts))
        local = in_process_provider(self.provider)
        exact = local.label_logprobs if local is not None else None
        requests = []
        for messages in prompts:
            request: dict[str, Any] = {"model": self.model, "messages": list(messages),
                                       "labels": labels}
            if exact is None:
                request.update(temperature=0.0, max_tokens=1, logprobs=True,
                               top_logprobs=TOP_LOGPROBS if top_logprobs is None
                               else top_logprobs)
                if self.api_base:
                    request["api_base"] = self.api_base
            requests.append(request)

        def send(request: dict[str, Any]) -> dict[str, Any]:
            if exact is None:
                return self._litellm_label_logprobs(request)
            name = self.model.split("/", 1)[1]
            return self._with_retries(lambda: exact(name, request["messages"], labels))

        def call(request: dict[str, Any]) -> dict[str, float]:
            result = self._cached(request, send)
            return {label: float(result["logprobs"][label]) for label in labels}

        return self._map(call, requests)

    def _litellm_label_logprobs(self, request: dict[str, Any]) -> dict[str, Any]:
        litellm = import_litellm()
        kwargs = self._litellm_kwargs(request)
        labels = kwargs.pop("labels")
        response = self._with_retries(lambda: litellm.completion(**kwargs))
        top = first_token_top(response, self.model)
        return {"logprobs": read_top_logprobs(top, labels), **response_usage(litellm, response)}

    def _map(self, call: Callable[[dict[str, Any]], T], requests: list[dict[str, Any]]) -> list[T]:
        """Run ``call`` on each request: in order in-process, else with bounded concurrency."""

        def one(request: dict[str, Any]) -> T:
            check_stop()
            result = call(request)
            if self.on_request is not None:
                self.on_request()
            return result

        in_process = in_process_provider(self.provider) is not None
        workers = 1 if in_process else max(1, self.concurrency)
        if workers == 1 or len(requests) == 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(workers, len(requests))) as pool:
            return list(pool.map(one, requests))

    def _call(self, request: dict[str, Any]) -> str:
        return str(self._cached(request, self._call_provider)["text"])

    def _cached(
        self, request: dict[str, Any], send: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """``send(request)``'s result, from the disk cache when there; usage counted either way.

        ``send`` returns a JSON-able dict with ``prompt_tokens``, ``completion_tokens``
        and ``cost`` besides its payload.
        """
        key = request_key(request)
        if self.cache is not None:
            hit = self.cache.get_json(key)
            if hit is not None:
                self.usage.add(
                    cached=True,
                    prompt_tokens=hit.get("prompt_tokens", 0),
                    completion_tokens=hit.get("completion_tokens", 0),
                )
                return dict(hit)
        result = send(request)
        self.usage.add(
            cached=False,
            prompt_tokens=result["prompt_tokens"],
            completion_tokens=result["completion_tokens"],
            cost=result.get("cost", 0.0),
        )
        if self.cache is not None:
            self.cache.set_json(key, result)
        return result

    def _litellm_kwargs(self, request: dict[str, Any]) -> dict[str, Any]:
        """``litellm.completion`` arguments for a request: timeout, no LiteLLM retries, key."""
        kwargs = dict(request)
        kwargs["timeout"] = self.timeout
        kwargs["drop_params"] = True
        kwargs["num_retries"] = 0
        if self._api_key:
            kwargs["api_key"] = self._api_key
        return kwargs

    def _with_retries(self, send: Callable[[], T]) -> T:
        """``send()``, retried with exponential backoff on transient errors.

        Provider exceptions become promptopt ones
        (:func:`~promptopt.llm._errors.map_provider_error`); a failure for good is
        counted in the usage.
        """
        attempt = 0
        while True:
            try:
                return send()
            except Exception as exc:  # provider SDKs raise many types
                if isinstance(exc, PromptoptError) and not isinstance(exc, LLMError):
                    raise  # e.g. unusable labels: no provider failure, nothing to retry
                error = map_provider_error(exc, self.model, self._api_key)
                retryable = isinstance(error, (TransientLLMError, LLMTimeoutError))
                if not retryable or attempt >= self.max_retries:
                    self.usage.add(cached=False, failed=True)
                    if retryable:
                        raise type(error)(
                            f"{error} (gave up after {attempt + 1} attempts)"
                        ) from exc
                    raise error from exc
                wait = retry_after(exc)
                if wait is None:
                    wait = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
                time.sleep(min(wait, 60.0))
                attempt += 1
                self.usage.retried()

    def _call_provider(self, request: dict[str, Any]) -> dict[str, Any]:
        litellm = import_litellm()
        kwargs = self._litellm_kwargs(request)
        response = self._with_retries(lambda: litellm.completion(**kwargs))
        choice = response.choices[0]
        text = (getattr(choice, "message", None) and choice.message.content) or ""
        text = cut_to_max_tokens(text, request.get("max_tokens"))
        return {"text": text, **response_usage(litellm, response)}
