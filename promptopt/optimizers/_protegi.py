"""ProTeGi: prompt optimization with textual "gradients" and beam search.

Pryzant et al. 2023, "Automatic Prompt Optimization with 'Gradient Descent' and Beam
Search". Each round, every prompt in the beam is run on a minibatch; its errors are
shown to the proposer LLM, which writes reasons the prompt failed (textual
gradients, ``<START>...<END>``), then edits the prompt against each reason, and the
edits are paraphrased (Monte Carlo samples). The next beam is chosen from the beam
and all new candidates by a best-arm bandit over random minibatches: UCB or
successive rejects. A beam member's error-collection score counts as its first
bandit reward, so no evaluation is paid twice.

For a float metric such as SCS, the "errors" are the lowest-scoring examples of the
minibatch. Left out, for small budgets: sampling several error subsets per prompt
(one subset, the worst examples, gives one gradient call), the paper's cap on
expansions per prompt, and its larger defaults (64-example minibatches, 4 gradients,
2 Monte Carlo samples, 6 rounds of a 4-wide beam over thousands of calls).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from promptopt.data import Example
from promptopt.errors import BudgetExhausted
from promptopt.evaluator import Evaluation
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import SearchContext, strip_tags
from promptopt.tasks import Task
from promptopt.template import Template

MAX_GRADIENT_CHARS = 600

GRADIENT_PROMPT = (
    "I'm trying to write a prompt for this task: {task}\n\n"
    'My current prompt is:\n"{prompt}"\n\n'
    "But this prompt gets the following examples wrong:\n\n{errors}\n\n"
    "Give {n} reasons why the prompt could have gotten these examples wrong. "
    "Wrap each reason with <START> and <END>.\n\n<START>"
)
EDIT_PROMPT = (
    "I'm trying to write a prompt for this task: {task}\n\n"
    'My current prompt is:\n"{prompt}"\n\n'
    "But it gets the following examples wrong:\n\n{errors}\n\n"
    "Based on these examples the problem with this prompt is that {gradient}\n\n"
    "Based on the above information, I wrote {n} different improved prompts. "
    "Each prompt is wrapped with <START> and <END>.\n\n"
    "The {n} new prompts are:\n<START>"
)
PARAPHRASE_PROMPT = (
    "Generate a variation of the following instruction while keeping the semantic "
    "meaning.\n\nInput: {prompt}\n\nOutput:"
)


def between(raw: str, opened: bool = True, start: str = "<START>", end: str = "<END>") -> list[str]:
    """Texts wrapped in ``<START>...<END>``.

    ``opened`` says that the meta-prompt itself ended with ``<START>`` (a base model
    continues from there), so the answer may begin inside the first item. An unclosed
    last item is read to the end of its line; stray tags are removed.
    """
    text = raw if not opened or raw.lstrip().upper().startswith(start) else start + raw
    out = []
    for chunk in re.split(re.escape(start), text, flags=re.IGNORECASE)[1:]:
        closed = re.split(re.escape(end), chunk, maxsplit=1, flags=re.IGNORECASE)
        body = closed[0] if len(closed) == 2 else chunk.strip().split("\n", 1)[0]
        body = strip_tags(body).replace("\n", " ")
        if body:
            out.append(body)
    return out


def lowest_scoring(evaluation: Evaluation, k: int) -> list[int]:
    """Positions of the ``k`` lowest-scoring examples (ties keep the earlier example)."""
    order = sorted(range(evaluation.n), key=lambda i: (evaluation.scores[i], i))
    return order[:k]


def error_report(
    task: Task, examples: Sequence[Example], evaluation: Evaluation, k: int
) -> str:
    """The ``k`` lowest-scoring of ``examples`` with their predictions, scores and feedback.

    ``evaluation`` is ``examples``' evaluation; the report is what the gradient and
    edit prompts show as the examples the prompt "gets wrong". The feedback line is
    the task's explanation of each score (:meth:`Task.feedback`).
    """
    return "\n\n".join(
        f"{task.format_example(examples[i])}\nPrediction: {evaluation.predictions[i]}\n"
        f"Score: {evaluation.scores[i]:.2f}\n"
        "Feedback: "
        + task.feedback(evaluation.predictions[i], examples[i], evaluation.scores[i]).replace(
            "\n", "; ")
        for i in lowest_scoring(evaluation, k)
    )


def task_line(task: Task, *, brief: bool = False) -> str:
    """The task as the gradient and edit prompts name it: its description, and with
    ``brief`` what the model must do (:attr:`Task.brief`)."""
    line = task.description or task.name
    return f"{line}. {task.brief}" if brief and task.brief else line


def edit_request(task: Task, instruction: str, errors: str, gradient: str, n: int, *,
                 brief: bool = False) -> str:
    """The prompt that asks for ``n`` edits of ``instruction`` against one textual gradient.

    ``gradient`` completes "the problem with this prompt is that ...": a reason the
    proposer wrote (ProTeGi) or a person's critique (:func:`promptopt.runs._refine`);
    ``brief``: see :func:`task_line`.
    """
    return EDIT_PROMPT.format(
        task=task_line(task, brief=brief), prompt=instruction, errors=errors,
        gradient=gradient, n=n,
    )


def accept_edits(
    ctx: SearchContext, texts: Sequence[str], base: Template, limit: int
) -> list[Template]:
    """Accept up to ``limit`` proposals, counting an answer that held none."""
    if not texts:
        ctx.proposed += 1
        ctx.rejected["no proposal in answer"] += 1
    accepted = (ctx.accept(t, base) for t in texts[:limit])
    return [t for t in accepted if t is not None]


def edit_step(ctx: SearchContext, template: Template, errors: str, gradient: str, n: int, *,
              brief: bool = False) -> list[Template]:
    """ProTeGi's edit step, one proposer call: ask for ``n`` edits of ``template``'s
    instruction that fix ``gradient`` (why it fails on ``errors``, an
    :func:`error_report`), and accept up to ``n`` of them (:meth:`SearchContext.accept`;
    each keeps ``template``'s other parts). ``refine`` calls it with a person's critique
    as the gradient; ``brief``: see :func:`task_line`."""
    prompt = edit_request(ctx.task, template.instruction, errors, gradient, n, brief=brief)
    answer = ctx.propose(prompt, n=1)[0]
    return accept_edits(ctx, between(answer), template, n)


def _start(n_arms: int, initial: Sequence[Sequence[float]] | None) -> list[list[float]]:
    if initial is not None and len(initial) != n_arms:
        raise ValueError("initial must hold one list of rewards per arm")
    return [list(r) for r in initial] if initial is not None else [[] for _ in range(n_arms)]


def ucb_select(
    n_arms: int,
    pull: Callable[[int], float],
    *,
    k: int,
    pulls: int,
    c: float = 1.0,
    initial: Sequence[Sequence[float]] | None = None,
) -> list[int]:
    """Best-``k`` arms by UCB: every arm once, then argmax of ``mean + c*sqrt(ln N / n_i)``.

    Args:
        n_arms: Number of candidates.
        pull: Returns one noisy reward of an arm (e.g. its score on a fresh minibatch).
        k: Arms to return, best empirical mean first.
        pulls: New pulls to make (more if needed to pull every arm once).
        c: Exploration weight.
        initial: Rewards already observed, one list per arm (they count as pulls).
    """
    rewards = _start(n_arms, initial)
    for _ in range(max(pulls, sum(1 for r in rewards if not r))):
        unpulled = [i for i in range(n_arms) if not rewards[i]]
        if unpulled:
            arm = unpulled[0]
        else:
            total = sum(len(r) for r in rewards)
            arm = max(
                range(n_arms),
                key=lambda i: (
                    sum(rewards[i]) / len(rewards[i])
                    + c * math.sqrt(math.log(total) / len(rewards[i])),
                    -i,
                ),
            )
        rewards[arm].append(pull(arm))
    return _top(rewards, range(n_arms), k)


def successive_rejects(
    n_arms: int,
    pull: Callable[[int], float],
    *,
    k: int,
    pulls: int,
    initial: Sequence[Sequence[float]] | None = None,
) -> list[int]:
    """Best-``k`` arms by successive rejects (Audibert & Bubeck 2010), best mean first.

    In phase ``j`` every surviving arm is pulled until it has
    ``ceil((pulls - n_arms) / (logbar * (n_arms + 1 - j)))`` rewards (at least one;
    ``initial`` rewards count), then the arm with the lowest mean is rejected, until
    ``k`` remain.
    """
    rewards = _start(n_arms, initial)
    if n_arms <= k:  # nothing to reject; one reward each still ranks them
        for arm in range(n_arms):
            if not rewards[arm]:
                rewards[arm].append(pull(arm))
        return _top(rewards, range(n_arms), k)
    logbar = 0.5 + sum(1.0 / i for i in range(2, n_arms + 1))
    alive = list(range(n_arms))
    for phase in range(1, n_arms - k + 1):
        target = max(1, math.ceil((pulls - n_arms) / (logbar * (n_arms + 1 - phase))))
        for arm in alive:
            while len(rewards[arm]) < target:
                rewards[arm].append(pull(arm))
        worst = min(alive, key=lambda i: (sum(rewards[i]) / len(rewards[i]), -i))
        alive.remove(worst)
    return _top(rewards, alive, k)


def _top(rewards: Sequence[Sequence[float]], arms: Sequence[int] | range, k: int) -> list[int]:
    def mean(i: int) -> float:
        return sum(rewards[i]) / len(rewards[i]) if rewards[i] else float("-inf")

    return sorted(arms, key=lambda i: (-mean(i), i))[:k]


@optimizers.register("protegi")
class ProTeGi(Optimizer):
    """ProTeGi: textual gradients from errors, edits, paraphrases, bandit-selected beam.

    Args:
        rounds: Expansion rounds at most (the budget usually ends the run first).
        beam_size: Prompts kept in the beam.
        minibatch_size: Train examples per minibatch (error collection and each bandit pull).
        errors_per_gradient: Lowest-scoring examples shown to the proposer.
        num_gradients: Reasons asked for per beam member (one call).
        edits_per_gradient: Edited prompts asked for per reason (one call).
        mc_samples: Monte Carlo paraphrases per edited prompt (one call each).
        selector: Beam selection bandit, ``"ucb"`` or ``"sr"`` (successive rejects).
        selection_pulls: Bandit budget per selection step, in minibatch evaluations
            (UCB makes that many; successive rejects sizes its phases with it).
        ucb_c: UCB exploration weight.
        task_brief: Name the task in the gradient and edit prompts with what the model
            must do (the task's ``brief``) after its description.
        opening: Build proposals on the start opened with the word most training
            answers begin with, where the task offers answer prefixes and the start has
            none (:meth:`SearchContext.open_answers`).
    """

    legacy_settings = {"task_brief": False, "opening": False}

    def __init__(
        self,
        *,
        rounds: int = 6,
        beam_size: int = 4,
        minibatch_size: int = 4,
        errors_per_gradient: int = 2,
        num_gradients: int = 2,
        edits_per_gradient: int = 1,
        mc_samples: int = 1,
        selector: str = "ucb",
        selection_pulls: int = 8,
        ucb_c: float = 1.0,
        task_brief: bool = True,
        opening: bool = True,
    ) -> None:
        self.rounds = rounds
        self.beam_size = beam_size
        self.minibatch_size = minibatch_size
        self.errors_per_gradient = errors_per_gradient
        self.num_gradients = num_gradients
        self.edits_per_gradient = edits_per_gradient
        self.mc_samples = mc_samples
        self.selector = selector
        self.selection_pulls = selection_pulls
        self.ucb_c = ucb_c
        self.task_brief = task_brief
        self.opening = opening

    def validate(self) -> None:
        """Check the settings."""
        for name in (
            "rounds",
            "beam_size",
            "minibatch_size",
            "errors_per_gradient",
            "num_gradients",
            "edits_per_gradient",
            "selection_pulls",
        ):
            self._check(getattr(self, name) >= 1, name, "must be at least 1")
        self._check(self.mc_samples >= 0, "mc_samples", "must be at least 0")
        self._check(self.selector in ("ucb", "sr"), "selector", "must be 'ucb' or 'sr'")
        self._check(self.ucb_c >= 0, "ucb_c", "must be non-negative")

    def search(self, ctx: SearchContext) -> None:
        """Expand the beam round by round and keep the bandit's choice."""
        self._lineage: dict[str, tuple[list[str], dict[str, Any]]] = {
            ctx.base.id: ([], {"round": 0, "kind": "start", "step": 0})
        }
        self.beam_: list[Template] = [ctx.base]
        for r in range(1, self.rounds + 1):
            self._round_scores: dict[str, list[float]] = {}
            new: list[Template] = []
            for member in list(self.beam_):
                new.extend(self._expand(ctx, member, r))
            if new:  # nothing new: the beam stands, no selection calls are spent
                self.beam_ = self.select(ctx, self.beam_ + new)

    def _evaluate(self, ctx: SearchContext, template: Template, batch: list[Example]) -> Evaluation:
        parents, meta = self._lineage[template.id]
        return ctx.evaluate(template, batch, parents=parents, meta=meta)

    def _expand(self, ctx: SearchContext, member: Template, r: int) -> list[Template]:
        """Errors -> gradients -> edits -> paraphrases for one beam member."""
        batch = ctx.minibatch(self.minibatch_size)
        ev = self._evaluate(ctx, member, batch)
        if ev.failed:  # no predictions to learn from: this member is not expanded
            return []
        self._round_scores[member.id] = [ev.score]
        errors = error_report(ctx.task, batch, ev, self.errors_per_gradient)
        task = task_line(ctx.task, brief=self.task_brief)
        if not ctx.can_afford(2):
            raise BudgetExhausted("no budget left for a gradient and an edit")
        prompt = GRADIENT_PROMPT.format(
            task=task, prompt=member.instruction, errors=errors, n=self.num_gradients
        )
        gradients = [g[:MAX_GRADIENT_CHARS] for g in between(ctx.propose(prompt, n=1)[0])][
            : self.num_gradients
        ]
        if not gradients:
            ctx.proposed += 1
            ctx.rejected["no gradient in answer"] += 1
        out: list[Template] = []
        for gradient in gradients:
            edits = edit_step(ctx, member, errors, gradient, self.edits_per_gradient,
                              brief=self.task_brief)
            for edit in edits:
                meta = {"gradient": gradient, "round": r, "kind": "edit", "step": r}
                self._lineage[edit.id] = ([member.id], meta)
                out.append(edit)
                if self.mc_samples:
                    answers = ctx.propose(
                        PARAPHRASE_PROMPT.format(prompt=edit.instruction), n=self.mc_samples
                    )
                    for para in ctx.accept_answers(answers, edit):
                        self._lineage[para.id] = ([edit.id], {**meta, "kind": "paraphrase"})
                        out.append(para)
        return out

    def select(self, ctx: SearchContext, candidates: Sequence[Template]) -> list[Template]:
        """The next beam: the bandit's best ``beam_size`` candidates by minibatch score.

        A beam member's error-collection score this round is its first reward. Every
        candidate gets at least one, even when all fit the beam: new candidates need a
        train score to compete in the final choice.
        """

        def pull(i: int) -> float:
            return self._evaluate(ctx, candidates[i], ctx.minibatch(self.minibatch_size)).score

        initial = [list(self._round_scores.get(c.id, [])) for c in candidates]
        if self.selector == "sr":
            picked = successive_rejects(
                len(candidates),
                pull,
                k=self.beam_size,
                pulls=self.selection_pulls,
                initial=initial,
            )
        else:
            picked = ucb_select(
                len(candidates),
                pull,
                k=self.beam_size,
                pulls=self.selection_pulls,
                c=self.ucb_c,
                initial=initial,
            )
        return [candidates[i] for i in picked]
