"""In-process LLM providers, by model-string prefix, served to LiteLLM.

A provider is a Python function that answers a request in this process (no server):
``generate(name, messages, params) -> {text, prompt_tokens, completion_tokens}``,
optionally ``label_logprobs(name, messages, labels) -> {logprobs, prompt_tokens,
completion_tokens}`` (exact label log-probabilities) and ``is_chat(name)`` (whether
the model wants chat messages; default: yes). The embedded llama.cpp engine registers
``llamacpp`` (:mod:`promptopt.llm._embedded`); test doubles register their own
(``fake``, in ``promptopt.testing``). :func:`install` wraps each registered provider
as a LiteLLM ``CustomLLM``, so ``LLM("llamacpp/gemma-3-270m")`` and DSPy's LiteLLM
calls reach it like any other provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Generate = Callable[[str, list[dict[str, Any]], dict[str, Any]], dict[str, Any]]
LabelLogprobs = Callable[[str, list[dict[str, Any]], list[str]], dict[str, Any]]


@dataclass(frozen=True)
class Provider:
    """One in-process provider (see the module)."""

    prefix: str
    generate: Generate
    label_logprobs: LabelLogprobs | None = None
    is_chat: Callable[[str], bool] | None = None


_PROVIDERS: dict[str, Provider] = {}
_INSTALLED: set[str] = set()
_lock = threading.Lock()


def register_provider(
    prefix: str,
    generate: Generate,
    *,
    label_logprobs: LabelLogprobs | None = None,
    is_chat: Callable[[str], bool] | None = None,
) -> None:
    """Serve model strings ``<prefix>/<name>`` with ``generate`` in this process."""
    with _lock:
        _PROVIDERS[prefix] = Provider(prefix, generate, label_logprobs, is_chat)
        _INSTALLED.discard(prefix)


def in_process_provider(prefix: str) -> Provider | None:
    """The registered provider for ``prefix``, or None (a LiteLLM provider)."""
    return _PROVIDERS.get(prefix)


def install(litellm: Any) -> None:
    """Add every registered provider LiteLLM does not have yet (cheap when none is new)."""
    with _lock:
        new = [p for prefix, p in _PROVIDERS.items() if prefix not in _INSTALLED]
        if not new:
            return
        handler = _handler_class()
        keep = [e for e in litellm.custom_provider_map
                if e["provider"] not in {p.prefix for p in new}]
        litellm.custom_provider_map = [
            *keep, *({"provider": p.prefix, "custom_handler": handler(p)} for p in new)
        ]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
        _INSTALLED.update(p.prefix for p in new)


def _handler_class() -> Any:
    from litellm import CustomLLM
    from litellm.types.utils import ModelResponse

    class FunctionProvider(CustomLLM):  # type: ignore[misc]
        def __init__(self, provider: Provider) -> None:
            super().__init__()
            self.provider = provider

        def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
            model = kwargs["model"]
            prefix = self.provider.prefix + "/"
            name = model[len(prefix):] if model.startswith(prefix) else model
            result = self.provider.generate(
                name, kwargs["messages"], kwargs.get("optional_params") or {}
            )
            return ModelResponse(
                model=model,
                created=int(time.time()),
                choices=[
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": result["text"]},
                    }
                ],
                usage={
                    "prompt_tokens": result["prompt_tokens"],
                    "completion_tokens": result["completion_tokens"],
                    "total_tokens": result["prompt_tokens"] + result["completion_tokens"],
                },
            )

        async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
            return self.completion(*args, **kwargs)

    return FunctionProvider
