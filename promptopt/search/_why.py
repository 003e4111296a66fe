"""One line saying why a run's result is its starting template, from what the run recorded.

E.g. ``the result is the starting template: 14 of 16 proposals unusable: empty 8,
duplicate 6; 2 candidates scored in 9 evaluations; the best finalist's validation
gain +0.0160 (96.7% interval [-0.0100, +0.0410], 20 examples) is not credible; the
proposer is llamacpp/gemma-3-270m (Gemma 3 270M base); try --proposer
llamacpp/smollm2-135m or a stronger model``. Built by
:meth:`~promptopt.optimizers.Optimizer.optimize` from the proposal bookkeeping of the
:class:`~promptopt.search.SearchContext`, the evaluations and the final choice.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptopt.evaluator import Evaluation
from promptopt.llm import EMBEDDED_MODELS
from promptopt.search._context import SearchContext
from promptopt.search._selection import Choice

SMALL_CHAT_PROPOSER = "llamacpp/smollm2-135m"
"""The embedded chat model suggested when a base-model proposer gives unusable answers."""


def describe_model(model: str) -> str:
    """``model``, with the embedded catalogue's short description when it has one."""
    provider, _, name = model.partition("/")
    if provider == "llamacpp" and name in EMBEDDED_MODELS:
        return f"{model} ({EMBEDDED_MODELS[name].description.split(',')[0]})"
    return model


def why_start(ctx: SearchContext, choice: Choice | None,
              evaluations: Sequence[Evaluation]) -> str:
    """Why a run's result is its starting template, in one line.

    Args:
        ctx: The run's search context (proposals, rejections, proposer).
        choice: The final choice (None: unknown, e.g. a method's own choice).
        evaluations: The run's evaluations (train and validation).
    """
    parts = []
    proposed, rejected = ctx.proposed, sum(ctx.rejected.values())
    if proposed:
        reasons = ", ".join(f"{reason} {n}" for reason, n in ctx.rejected.most_common())
        part = f"{rejected} of {proposed} proposals unusable" + (f": {reasons}" if reasons else "")
        if rejected == proposed:
            part = f"the proposer returned nothing usable, {part}"
        parts.append(part)
    candidates = {ev.template.id for ev in evaluations
                  if ev.split == "train" and not ev.failed} - {ctx.start.id}
    parts.append(f"{len(candidates)} candidate{'s' if len(candidates) != 1 else ''} scored in "
                 f"{len(evaluations)} evaluations")
    if choice is not None and choice.best_other is not None:
        parts.append(f"the best finalist's validation gain {choice.best_other.describe()} is not "
                     f"credible")
    elif candidates:
        parts.append("no finalist could be scored on the whole validation split")
    if ctx.proposal_calls:
        model = ctx.proposer.model
        parts.append(f"the proposer is {describe_model(model)}")
        if proposed and rejected * 2 >= proposed:
            parts.append(f"try --proposer {SMALL_CHAT_PROPOSER} or a stronger model"
                         if model != SMALL_CHAT_PROPOSER else "try a stronger --proposer")
    if choice is not None and choice.best_other is not None and choice.best_other.gain > 0:
        parts.append("more validation examples (--val) or a larger --budget may show a "
                     "smaller gain")
    elif not candidates and not ctx.proposal_calls:
        parts.append("a larger --budget may let the search try candidates")
    return "the result is the starting template: " + "; ".join(parts)
