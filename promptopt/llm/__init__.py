"""The LLM layer: LiteLLM model strings, the embedded llama.cpp provider, cache, usage.

``LLM`` is the client; in-process providers (the embedded ``llamacpp/...`` models, test
doubles) are registered by prefix with :func:`register_provider`.
"""

from promptopt.llm._cache import DiskCache, default_cache_dir, request_key
from promptopt.llm._client import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, LLM, cut_to_max_tokens
from promptopt.llm._embedded import (
    DEFAULT_MODEL,
    DEFAULT_PROPOSER,
    EMBEDDED_MODELS,
    gguf_path,
    proposer_for,
)
from promptopt.llm._litellm import Messages, import_litellm, response_usage
from promptopt.llm._logprobs import FLOOR_LOGPROB, TOP_LOGPROBS, read_top_logprobs
from promptopt.llm._providers import Provider, in_process_provider, register_provider
from promptopt.llm._states import DEFAULT_LIMIT_MB as DEFAULT_STATE_CACHE_MB
from promptopt.llm._usage import Budget, Usage

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PROPOSER",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_STATE_CACHE_MB",
    "DEFAULT_TIMEOUT",
    "EMBEDDED_MODELS",
    "FLOOR_LOGPROB",
    "LLM",
    "TOP_LOGPROBS",
    "Budget",
    "DiskCache",
    "Messages",
    "Provider",
    "Usage",
    "cut_to_max_tokens",
    "default_cache_dir",
    "gguf_path",
    "proposer_for",
    "import_litellm",
    "in_process_provider",
    "read_top_logprobs",
    "register_provider",
    "request_key",
    "response_usage",
]
