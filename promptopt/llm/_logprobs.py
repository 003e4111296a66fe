"""Label log-probabilities: how likely a model finds each label's first token after a prompt.

A classification task asks, for each prompt, how likely the model is to continue it
with each label; nothing is sampled. :meth:`LLM.label_logprobs
<promptopt.llm.LLM.label_logprobs>` sends one request per prompt through the same
machinery as completions (charged to the budget, cached on disk under a key that
includes the labels, counted in the usage, retried on transient errors) and gets the
answer in one of two ways:

- **In-process providers compute it exactly** (their ``label_logprobs``, see
  :mod:`promptopt.llm._providers`): ``llamacpp/...`` evaluates the prompt and reads
  the log-softmax of the model's logits at each label's first token (any token of the
  vocabulary, not only the most likely ones).
- **LiteLLM providers** (``openai/...``, ``hosted_vllm/...``, ...) are asked for one
  token at temperature 0 with ``logprobs=True, top_logprobs=K``, and the labels are
  read off the first token's top-``K`` list by :func:`read_top_logprobs` (this module:
  the reading of a response, no requests). A provider
  whose answer carries no log-probabilities raises :class:`~promptopt.errors.LLMError`
  saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import LLMError

TOP_LOGPROBS = 20
"""Alternatives asked of LiteLLM providers per request (OpenAI allows at most 20)."""
FLOOR_LOGPROB = math.log(1e-12)
"""The lowest log-probability reported for a label (absent labels never get ``-inf``)."""

def read_top_logprobs(
    top: Sequence[tuple[str, float]], labels: Sequence[str]
) -> dict[str, float]:
    """Each label's log-prob from a first token's top-``K`` alternatives (LiteLLM providers).

    Without the provider's tokenizer, a listed token stands for a label when, stripped
    of surrounding whitespace, it is non-empty and a prefix of that label and of no
    other label; so ``" A"`` and ``"A"`` both count for the label ``A``, and ``"t"``
    counts for ``tie`` unless another label also starts with ``t``. A label's
    log-prob is the log of the summed probabilities of its tokens. A label none of
    whose tokens is listed gets an upper bound of its log-prob: the lowest listed
    log-prob, or the log of the probability mass the list leaves over if that is
    smaller (never below :data:`FLOOR_LOGPROB`).

    Args:
        top: ``(token, logprob)`` pairs of the first generated token.
        labels: The label texts.

    Returns:
        ``{label: logprob}`` for every label.
    """
    mass: dict[str, float] = {}
    for token, logprob in top:
        text = token.strip()
        owners = [label for label in labels if text and label.strip().startswith(text)]
        if len(owners) == 1:
            mass[owners[0]] = mass.get(owners[0], 0.0) + math.exp(logprob)
    listed = [lp for _, lp in top]
    left = 1.0 - sum(math.exp(lp) for lp in listed)
    bound = min(min(listed, default=0.0), math.log(left) if left > 0 else FLOOR_LOGPROB)
    return {
        label: max(FLOOR_LOGPROB, math.log(mass[label]) if mass.get(label) else bound)
        for label in labels
    }


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def first_token_top(response: Any, model: str) -> list[tuple[str, float]]:
    """The ``(token, logprob)`` alternatives of a LiteLLM response's first token.

    Raises:
        LLMError: if the response carries no log-probabilities.
    """
    choices = _get(response, "choices") or []
    logprobs = _get(choices[0], "logprobs") if choices else None
    content = _get(logprobs, "content") if logprobs is not None else None
    top = _get(content[0], "top_logprobs") if content else None
    if not top:
        raise LLMError(
            f"model {model} returned no log-probabilities; use a model/provider that supports "
            "logprobs, e.g. openai/gpt-4o-mini, a vLLM server (hosted_vllm/... or "
            "openai/... with --api-base) or the embedded llamacpp/gemma-3-270m"
        )
    return [(str(_get(t, "token") or ""), float(_get(t, "logprob"))) for t in top]
