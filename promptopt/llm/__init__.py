"""The LLM layer: LiteLLM model strings, the embedded llama.cpp provider, cache, usage."""

from promptopt.llm._cache import DiskCache, default_cache_dir
from promptopt.llm._client import LLM, import_litellm
from promptopt.llm._embedded import DEFAULT_MODEL, EMBEDDED_MODELS, gguf_path
from promptopt.llm._usage import Budget, Usage

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "LLM",
    "Budget",
    "DiskCache",
    "Usage",
    "default_cache_dir",
    "gguf_path",
    "import_litellm",
]
