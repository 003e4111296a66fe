"""Plain DSPy on the prompt-recovery task, for the benchmarks that compare against it.

Nothing here goes through promptopt's DSPy bridge (``promptopt/optimizers/_dspy.py``):
the program is an ordinary ``dspy.Predict``, DSPy renders its own prompts (ChatAdapter
markup) and calls the model through ``dspy.LM(..., engine="litellm")``, i.e. LiteLLM's
custom provider ``llamacpp/<name>`` that promptopt registers (the same in-process
llama.cpp model). promptopt supplies only the data, the split, the input truncation
and the SCS scorer, so that the scores are comparable with promptopt's.

- :class:`LenientChatAdapter`: DSPy's ChatAdapter without its JSON-adapter retry (one
  LM call per prediction). A 270M base model rarely writes the ``[[ ## field ## ]]``
  markers; for a signature with one output field, a reply that ChatAdapter cannot
  parse is taken whole (markers stripped) as that field, and counted in
  ``fallbacks``. Without it, DSPy scores such examples 0 (``failure_score``).
- :func:`scs_metric`: the task's SCS on the cleaned prediction
  (:func:`promptopt.tasks.clean_prediction`), as promptopt scores its own predictions.
- :class:`CallBudget` and :func:`counting_lm`: a ``dspy.LM`` subclass that counts
  every request (DSPy cache hits included, like promptopt's budget) and raises
  :class:`BudgetSpent` (a ``BaseException``, so DSPy's ``except Exception`` handlers
  let it through) once the limit is reached.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from promptopt.data import Example  # noqa: E402
from promptopt.llm import import_litellm  # noqa: E402
from promptopt.tasks import PromptRecoveryTask, clean_prediction, truncate_tokens  # noqa: E402

MARKER = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")
INPUTS = PromptRecoveryTask.input_fields
TARGET = PromptRecoveryTask.target_field


def import_dspy() -> Any:
    """DSPy, with promptopt's ``llamacpp`` LiteLLM provider registered first."""
    import_litellm()
    import dspy

    return dspy


class BudgetSpent(BaseException):
    """Raised by a counted LM when its call budget is used up."""


@dataclass
class CallBudget:
    """Counts LM requests (cache hits included) against ``limit`` (None: unlimited).

    Shared by every copy of a counted LM (DSPy copies LMs to change their settings).
    """

    limit: int | None = None
    calls: int = 0
    cache_hits: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    pending: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        """Calls plus cache hits."""
        return self.calls + self.cache_hits

    def take(self) -> None:
        """Count one request, or raise :class:`BudgetSpent` if none is left."""
        with self._lock:
            if self.limit is not None and self.requests + self.pending >= self.limit:
                raise BudgetSpent(f"call budget of {self.limit} spent")
            self.pending += 1

    def settle(self, entry: dict[str, Any] | None) -> None:
        """Record a finished request from its DSPy history entry."""
        response = (entry or {}).get("response")
        usage = (entry or {}).get("usage") or {}
        with self._lock:
            self.pending -= 1
            if getattr(response, "cache_hit", False):
                self.cache_hits += 1
            else:
                self.calls += 1
                self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.completion_tokens += int(usage.get("completion_tokens") or 0)


def counting_lm(model: str, budget: CallBudget, **kwargs: Any) -> Any:
    """A ``dspy.LM`` on the LiteLLM engine whose every request is counted in ``budget``."""
    dspy = import_dspy()

    class CountedLM(dspy.LM):  # type: ignore[misc,name-defined]
        # Copies (DSPy makes them to change settings) share ``budget`` via the closure.
        def __call__(self, *args: Any, **kw: Any) -> Any:
            budget.take()
            last = self.history[-1] if self.history else None
            try:
                return super().__call__(*args, **kw)
            finally:  # a failed request still counts
                entry = self.history[-1] if self.history else None
                budget.settle(entry if entry is not last else None)

    return CountedLM(model, engine="litellm", num_retries=0, **kwargs)


def lenient_adapter() -> Any:
    """A :class:`LenientChatAdapter` instance (DSPy imported lazily)."""
    dspy = import_dspy()
    from dspy.utils.exceptions import AdapterParseError

    class LenientChatAdapter(dspy.ChatAdapter):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(use_json_adapter_fallback=False)
            self.fallbacks = 0
            self.parsed = 0

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            try:
                out = super().parse(signature, completion)
            except AdapterParseError:
                if len(signature.output_fields) != 1:
                    raise
                self.fallbacks += 1
                text = MARKER.sub(" ", completion or "").strip()
                return {next(iter(signature.output_fields)): text}
            self.parsed += 1
            return out

    return LenientChatAdapter()


def signature(instruction: str) -> Any:
    """The task signature ``original_text, rewritten_text -> rewrite_prompt``."""
    dspy = import_dspy()
    fields = {name: dspy.InputField() for name in INPUTS}
    fields[TARGET] = dspy.OutputField()
    return dspy.Signature(fields, instruction)


def to_dspy(examples: Sequence[Example], max_text_tokens: int = 200) -> list[Any]:
    """DSPy examples with the inputs cut as promptopt cuts them before rendering."""
    dspy = import_dspy()
    return [
        dspy.Example(
            **{k: truncate_tokens(e.inputs[k], max_text_tokens) for k in INPUTS},
            **{TARGET: e.target},
        ).with_inputs(*INPUTS)
        for e in examples
    ]


def feedback_metric(task: Any) -> Callable[..., Any]:
    """DSPy GEPA's metric: the SCS score with the task's feedback text (prediction, true
    prompt, similarity, missed content words), as promptopt's reflective methods get it."""
    import dspy

    score_of = scs_metric(task.scorer, task.default_prediction)

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
               pred_trace: Any = None) -> Any:
        score = score_of(gold, pred, trace)
        text = clean_prediction(str(pred.get(TARGET) or ""), default=task.default_prediction)
        truth = Example(id="", inputs={}, target=str(gold.get(TARGET)))
        return dspy.Prediction(score=score, feedback=task.feedback(text, truth, score))

    return metric


def scs_metric(scorer: Any, default: str) -> Callable[..., float]:
    """DSPy metric: SCS of the cleaned prediction against the true prompt."""

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        text = clean_prediction(str(prediction.get(TARGET) or ""), default=default)
        return float(scorer.score([text], [str(example.get(TARGET))])[0])

    return metric
