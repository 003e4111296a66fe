"""LiteLLM, imported lazily and offline, with promptopt's in-process providers."""

from __future__ import annotations

import os
import threading
from typing import Any

from promptopt.llm._providers import install

Messages = list[dict[str, str]]
"""Chat messages: ``[{"role": ..., "content": ...}, ...]``."""

_litellm_lock = threading.Lock()
_litellm_ready = False


def import_litellm() -> Any:
    """Import LiteLLM lazily, offline, with promptopt's providers registered."""
    global _litellm_ready
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    with _litellm_lock:
        if not _litellm_ready:
            litellm.suppress_debug_info = True
            litellm.telemetry = False
            _litellm_ready = True
    install(litellm)  # providers registered since the last call
    return litellm


def response_usage(litellm: Any, response: Any) -> dict[str, Any]:
    """Token counts and cost (0 where LiteLLM knows no price) of a LiteLLM response."""
    usage = getattr(response, "usage", None)
    try:
        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # unknown price: report 0 rather than fail the call
        cost = 0.0
    return {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        "cost": cost,
    }
