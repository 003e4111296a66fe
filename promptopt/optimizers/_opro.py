"""OPRO: Optimization by PROmpting.

Yang et al. 2023, "Large Language Models as Optimizers" (arXiv:2309.03409). Each step
the proposer reads a meta-prompt holding the scored trajectory (up to ``max_history``
earlier instructions with their scores on 0-100, ascending, so the best comes last)
and a few task exemplars showing where the instruction goes, and is asked for a new
instruction that differs from all of them and scores higher. Several proposals are
sampled per step at a high temperature; each is scored (the scorer LLM runs at
temperature 0) and joins the trajectory.

Left out, or changed to fit small budgets:

- Candidates are scored on one fixed random minibatch of the train split per run
  (``minibatch_size``) rather than on the whole training set, so every step can afford
  a few evaluations; the final choice is still made on the validation split.
- Default ``proposals_per_step`` is 4 (the paper uses 8) and the number of proposals
  is cut, each step, to what the remaining budget can also evaluate.
- With ``task_brief`` (default), the meta-prompt says what the model must do with the
  instruction (the task's ``brief``): a 1.5B proposer shown prompt-recovery exemplars
  alone wrote instructions for rewriting the text rather than for naming the rewrite.
- The exemplars come before the trajectory (the paper shows them after it), so that
  a weak base model reads the scored instructions right before it is asked for a new
  one rather than copying an exemplar. No other meta-prompt variants (instruction
  position "Q_begin"/"A_begin", scores left out) and no early-stopping rule: the
  search runs until ``max_steps`` or the budget ends.
- Several workers on one study (``promptopt run --study NAME`` started N times) share
  one trajectory: each step, the instructions other workers scored on the same
  minibatch join this worker's history (the paper runs one process).
- With ``show_answers`` (default), the exemplars come from the scored minibatch and each
  shows, beside the correct answer, what the best instruction so far answered and its
  score on that example (no extra call: those predictions exist), so the proposer sees
  how the answers differ from what the metric rewards. The paper shows the correct
  answers alone (a 1.5B proposer shown only those drifted toward long step-by-step
  instructions); that this makes OPRO gain is not shown yet (docs/BENCHMARKS.md).
- Answers are read as continuations of the meta-prompt's final ``<INS>`` (weak base
  models rarely repeat the opening tag; see ``read_proposal`` in ``_base``): one
  instruction per sample, and answers that only echo an exemplar are counted as
  holding no proposal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from promptopt.data import Example
from promptopt.errors import BudgetExhausted
from promptopt.evaluator import Evaluation
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import SearchContext

TAG = "INS"


@optimizers.register("opro")
class OPRO(Optimizer):
    """OPRO: an LLM proposes instructions from a scored trajectory of earlier ones.

    Args:
        max_steps: Optimization steps (each: one meta-prompt, several proposals); the
            search also stops when the budget runs out.
        proposals_per_step: Proposer samples per step (the paper uses 8).
        temperature: Proposer sampling temperature (the paper uses 1.0).
        max_history: Most instructions shown in the meta-prompt (the best ones).
        num_exemplars: Task exemplars shown in each meta-prompt (resampled per step).
        minibatch_size: Train examples each candidate is scored on (one fixed random
            sample per run; the whole train split if it is smaller).
        show_answers: Show, with each exemplar (then drawn from the minibatch), the best
            instruction's answer and its score beside the correct answer.
        task_brief: Say first what the model must do (the task's ``brief``).
        opening: Build proposals on the start opened with the word most training
            answers begin with, where the task offers answer prefixes and the start has
            none (:meth:`SearchContext.open_answers`).
    """

    legacy_settings = {"show_answers": False, "task_brief": False, "opening": False}

    def __init__(
        self,
        *,
        max_steps: int = 200,
        proposals_per_step: int = 4,
        temperature: float = 1.0,
        max_history: int = 20,
        num_exemplars: int = 2,
        minibatch_size: int = 4,
        show_answers: bool = True,
        task_brief: bool = True,
        opening: bool = True,
    ) -> None:
        self.max_steps = max_steps
        self.proposals_per_step = proposals_per_step
        self.temperature = temperature
        self.max_history = max_history
        self.num_exemplars = num_exemplars
        self.minibatch_size = minibatch_size
        self.show_answers = show_answers
        self.task_brief = task_brief
        self.opening = opening

    def validate(self) -> None:
        """Check the settings."""
        self._check(self.max_steps >= 1, "max_steps", "must be at least 1")
        self._check(self.proposals_per_step >= 1, "proposals_per_step", "must be at least 1")
        self._check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        self._check(self.max_history >= 1, "max_history", "must be at least 1")
        self._check(self.num_exemplars >= 0, "num_exemplars", "must be at least 0")
        self._check(self.minibatch_size >= 1, "minibatch_size", "must be at least 1")

    def trajectory(self, history: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
        """The part of the history the meta-prompt shows.

        Args:
            history: ``(instruction, score)`` pairs in the order they were scored.

        Returns:
            The ``max_history`` best pairs, sorted by ascending score (best last; ties
            keep the order they were scored in).
        """
        indexed = list(enumerate(history))
        best = sorted(indexed, key=lambda p: (-p[1][1], p[0]))[: self.max_history]
        return [item for _, item in sorted(best, key=lambda p: (p[1][1], p[0]))]

    def build_meta_prompt(
        self, history: Sequence[tuple[str, float]], exemplars: Sequence[str], brief: str = ""
    ) -> str:
        """The OPRO meta-prompt: exemplars, scored trajectory, then the request.

        Args:
            history: ``(instruction, score)`` pairs; scores in [0, 1] are shown as
                integers on 0-100. Only :meth:`trajectory` of it is shown.
            exemplars: Formatted task examples (inputs and the true answer).
            brief: What the model must do (:attr:`Task.brief`), said first; ``""``: nothing.

        Returns:
            Plain text ending in ``<INS>``, inviting the proposer to continue with
            the new instruction.
        """
        parts = [" ".join(filter(None, [
            "Your task is to write an instruction <INS> for a language model.", brief]))]
        if exemplars:
            parts.append(
                "Below are some examples of the problem. <INS> marks where the instruction "
                + ("goes; then come the inputs, the correct answer, and what the best "
                   "instruction so far answered, with its score." if self.show_answers
                   else "goes; the last line is the correct answer.")
            )
            for i, exemplar in enumerate(exemplars, 1):
                parts.append(f"Example {i}:\n<{TAG}>\n{exemplar}")
        parts.append(
            "Below are some previous instructions with their scores. The score ranges from "
            "0 to 100; higher is better."
        )
        for text, score in self.trajectory(history):
            parts.append(f"<{TAG}>{text}</{TAG}>\nScore: {round(score * 100)}")
        parts.append(
            "Write a new instruction that is different from all the instructions above "
            "and has a higher score than all of them. It should be concise, effective and "
            "generally applicable to all the examples above. Write it between <INS> and "
            "</INS>."
        )
        parts.append(f"New instruction: <{TAG}>")
        return "\n\n".join(parts)

    def _exemplars(self, ctx: SearchContext, batch: Sequence[Example],
                   evaluations: Mapping[str, Evaluation],
                   history: Sequence[tuple[str, float]]) -> list[str]:
        """The step's exemplars: without :attr:`show_answers`, train examples with their
        correct answers; with it, minibatch examples, each also with the best
        instruction's answer to it and that answer's score (0-100)."""
        if not self.show_answers:
            k = min(self.num_exemplars, len(ctx.train))
            return [ctx.task.format_example(e) for e in ctx.rng.sample(ctx.train, k)]
        k = min(self.num_exemplars, len(batch))
        chosen = sorted(ctx.rng.sample(range(len(batch)), k))
        best = self.trajectory(history)[-1][0] if history else None
        ev = evaluations.get(best) if best is not None else None
        out = []
        for i in chosen:
            text = ctx.task.format_example(batch[i])
            if ev is not None:
                text += (f"\nAnswer of the best instruction so far: {ev.predictions[i]}"
                         f"\nIts score: {round(float(ev.scores[i]) * 100)}")
            out.append(text)
        return out

    def _affordable(self, ctx: SearchContext, per_candidate: int) -> int:
        """Proposals this step can pay for, each with its evaluation."""
        n = self.proposals_per_step
        while n > 0 and not ctx.can_afford(n * (1 + per_candidate)):
            n -= 1
        return n

    def search(self, ctx: SearchContext) -> None:
        """Score the start, then run meta-prompt steps until done or out of budget."""
        batch = ctx.minibatch(self.minibatch_size)
        start_eval = ctx.evaluate(ctx.base, batch, meta={"step": 0})
        history: list[tuple[str, float]] = []  # failed evaluations stay out of the trajectory
        evaluations: dict[str, Evaluation] = {}  # instruction -> its evaluation on batch
        if not start_eval.failed:
            history.append((ctx.base.instruction, start_eval.score))
            evaluations[ctx.base.instruction] = start_eval
        ids: dict[str, str] = {ctx.base.instruction: ctx.base.id}
        for step in range(1, self.max_steps + 1):
            for other in ctx.others(batch):  # other workers' candidates on the same batch
                if other.template.instruction not in ids:
                    history.append((other.template.instruction, other.score))
                    ids[other.template.instruction] = other.template.id
            n = self._affordable(ctx, len(batch))
            if n == 0:
                raise BudgetExhausted(f"opro: no budget left for step {step}")
            exemplars = self._exemplars(ctx, batch, evaluations, history)
            brief = ctx.task.brief if self.task_brief else ""
            prompt = self.build_meta_prompt(history, exemplars, brief)
            parents = [ids[text] for text, _ in self.trajectory(history)]
            raw = ctx.propose(prompt, n=n, temperature=self.temperature, stop=[f"</{TAG}>"])
            frame = self.build_meta_prompt([], [])  # the fixed wording, without the task's
            for template in ctx.accept_answers(raw, tag=TAG, frame=frame):
                ev = ctx.evaluate(template, batch, parents=parents, meta={"step": step})
                if not ev.failed:
                    history.append((template.instruction, ev.score))
                    evaluations[template.instruction] = ev
                    ids[template.instruction] = template.id
