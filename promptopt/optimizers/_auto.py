"""``auto``: race several methods on one budget by successive halving.

Successive halving (Jamieson & Talwalkar 2016, "Non-stochastic Best Arm Identification
and Hyperparameter Optimization"; the inner loop of Hyperband, Li et al. 2018) with the
arms being search methods instead of hyperparameter settings. The search budget (what is
left after the starting template is scored on the validation split, once for all) is cut
into as many equal round budgets as there are rounds (``ceil(log2 n) + 1`` for ``n``
contestants); each round's budget is shared equally by the contestants still in. After a
round, each contestant's score is the best validation score among the templates its own
final choices (in this and its earlier runs) scored on the (whole, same) validation
split, the start included; the
better half (ties: the earlier in ``methods``) goes on. The last one left gets all that
remains, and is run again while it can spend more. The result is the shared final choice
(:meth:`Optimizer.select_final`) over the start and the best validated template of each
run of each contestant: every one of them was already scored on validation, so it costs
nothing more.

How a contestant continues: it is run again from its start, with the same seed and its
allowance grown by its new slice; what it paid for before is served free (see
:mod:`promptopt.search._lane`), so a rerun costs only its new requests and follows
the path a lone run of the method with that budget would take (exactly, for a race of
one; evaluations another contestant paid for cost it nothing). A round's unspent calls
go to the next rounds. Every trial is recorded under the contestant's name as its
method, with ``contestant`` and ``round`` in its meta; the start's validation trial,
paid by the race, is recorded under ``auto``.

Left out: Hyperband's outer loop over several halving brackets (one bracket is run);
sharing the study with other workers (each worker runs its own race).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation
from promptopt.llm import Budget
from promptopt.optimizers._base import Optimizer, OptimizeResult
from promptopt.registry import optimizers
from promptopt.search import Allowance, Lane, ReplayLLM, SearchContext, Selection
from promptopt.tasks import Task
from promptopt.template import Template

PREFERENCE = ("dspy-bootstrap", "tpe", "dspy-mipro", "evoprompt-ga", "ape", "opro", "random",
              "evoprompt-de", "protegi", "gepa", "dspy-gepa")
"""Default contestants first, in this order: the quality benchmark's order at budget 150
(docs/BENCHMARKS.md, mean test score over 3 seeds); other suitable methods (plugins)
follow by name. When the budget is too small for all, the last are left out, so a
budget that affords one contestant runs the method that did best there."""

NOT_BY_DEFAULT = ("auto", "identity", "mean-prompt")
"""Never default contestants: ``auto`` itself, ``identity`` (searches nothing) and
``mean-prompt`` (spends no calls in its search, so a race cannot give it anything)."""

NEVER = ("auto", "mean-prompt")
"""Methods that cannot be contestants (``mean-prompt``'s candidate has no train
evaluation for the shared final choice, and it spends no calls in its search)."""

NEVER_WHY = {
    "auto": "it is the race itself",
    "mean-prompt": "its search spends no LLM calls, so a race cannot give it anything; "
                   "run it on its own",
}


def halving_rounds(n: int) -> int:
    """Rounds of successive halving for ``n`` contestants, the last one's run included."""
    return 1 if n <= 1 else math.ceil(math.log2(n)) + 1


def default_contestants(task: Task) -> list[str]:
    """Every registered method that suits ``task``, in :data:`PREFERENCE` order."""
    names = [
        n for n in optimizers.names()
        if n not in NOT_BY_DEFAULT and optimizers.get(n).unsupported(task) is None
    ]
    known = [n for n in PREFERENCE if n in names]
    return known + sorted(n for n in names if n not in known)


@optimizers.register("auto")
class Auto(Optimizer):
    """Race several methods on one budget by successive halving; the best validated wins.

    The module docstring describes the rounds, the scores and how a contestant continues.
    After :meth:`optimize`, ``race_`` lists each contestant run (round, method, share,
    allowance, calls spent, score, why it stopped).

    Args:
        methods: The contestants, as a list or a comma-separated string (None: every
            registered method that suits the task, except ``auto``, ``identity`` and
            ``mean-prompt``, as many as the budget allows, in :data:`PREFERENCE` order).
        method_settings: Settings of the contestants, by method name (e.g.
            ``{"opro": {"max_steps": 3}}``); unnamed ones use their defaults.
        min_slice: A contestant's first slice must be at least this many validation
            evaluations' worth of calls (default 2: room to search and to validate one
            candidate).
    """

    def __init__(
        self,
        *,
        methods: Sequence[str] | str | None = None,
        method_settings: dict[str, dict[str, Any]] | None = None,
        min_slice: float = 2.0,
    ) -> None:
        self.methods = methods
        self.method_settings = method_settings
        self.min_slice = min_slice

    def named(self) -> list[str] | None:
        """The contestants named in :attr:`methods` (None: the default)."""
        if self.methods is None:
            return None
        raw = self.methods.split(",") if isinstance(self.methods, str) else self.methods
        return [str(n).strip() for n in raw if str(n).strip()]

    def validate(self) -> None:
        """Check the contestants' names and settings."""
        self._check(isinstance(self.min_slice, (int, float)) and self.min_slice >= 1,
                    "min_slice", "must be a number >= 1")
        names = self.named()
        valid = [n for n in optimizers.names() if n not in NEVER]
        if names is not None:
            self._check(bool(names), "methods", "name at least one method")
            for name in names:
                if name in NEVER:
                    raise ConfigError(f"auto: method {name!r} cannot race ({NEVER_WHY[name]}); "
                                      f"valid contestants: {', '.join(valid)}")
                if name not in optimizers.names():
                    raise ConfigError(f"auto: unknown method {name!r} in methods; valid "
                                      f"contestants: {', '.join(valid)}")
            self._check(len(set(names)) == len(names), "methods", "names repeat")
        settings = self.method_settings or {}
        self._check(isinstance(settings, dict) and all(
            isinstance(v, dict) for v in settings.values()), "method_settings",
            "must map method names to settings objects")
        for name, kwargs in settings.items():
            if names is not None and name not in names:
                raise ConfigError(f"auto: method_settings names {name!r}, which is not "
                                  f"among the contestants {names}")
            try:
                optimizers.get(name)(**kwargs).validate()
            except TypeError as exc:
                raise ConfigError(f"auto: bad settings for contestant {name!r}: {exc}") from None

    @classmethod
    def unsupported(cls, task: Task) -> str | None:
        """Refused only when no registered method suits the task."""
        return None if default_contestants(task) else "no registered method suits this task"

    def _final_reserve(self, n_val: int, budget: Budget, selection: Selection) -> int:
        """Nothing: every finalist is scored on validation during the race."""
        return 0

    def contestants(self, task: Task, pool: int, n_val: int) -> tuple[list[str], list[str]]:
        """The contestants that race, and the default ones the budget leaves out.

        Raises:
            ConfigError: a named method that does not suit the task, or a budget too
                small for the named contestants' first slices.
        """
        need = math.ceil(self.min_slice * n_val)
        names = self.named()
        if names is not None:
            for name in names:
                problem = optimizers.get(name).unsupported(task)
                if problem:
                    raise ConfigError(f"auto: method {name} cannot run on task {task.name}: "
                                      f"{problem}")
            first = pool // halving_rounds(len(names)) // len(names)
            if first < need:
                raise ConfigError(
                    f"budget too small for {len(names)} contestants: each one's first slice "
                    f"would be {first} LLM calls, and a method needs {need} (searching and "
                    f"validating on {n_val} examples); give a larger --budget or fewer "
                    f"methods (--set methods=...)"
                )
            return names, []
        names = default_contestants(task)
        k = len(names)
        while k > 1 and pool // halving_rounds(k) // k < need:
            k -= 1
        return names[:k], names[k:]

    def search(self, ctx: SearchContext) -> None:
        """Score the start on validation, then race the contestants."""
        evaluator, budget = ctx.evaluator, ctx.evaluator.budget
        if budget is None or budget.limit is None:
            raise ConfigError("auto races methods on one budget: give a --budget")
        ctx.evaluator.evaluate(ctx.start, "val", meta={"role": "start"}).require(
            "the starting template on the validation split")
        n_val = len(ctx.val)
        names, left_out = self.contestants(ctx.task, int(budget.remaining), n_val)
        self.race_: list[dict[str, Any]] = []
        self.lanes_: list[Lane] = []
        self.results_: dict[str, OptimizeResult] = {}
        self.notes_: list[str] = []
        if left_out:
            self.notes_.append(f"auto: the budget leaves out {', '.join(left_out)} "
                               f"(name contestants with --set methods=...)")
        memory: dict[str, dict[str, Any]] = {n: {} for n in names}
        paid: dict[str, set[Any]] = {n: set() for n in names}
        allowed: dict[str, int] = {n: n_val for n in names}  # the start's validation: paid
        best: dict[str, float] = {}
        alive, rounds_left, round_no = list(names), halving_rounds(len(names)), 0

        def run(name: str, new: int) -> dict[str, Any]:
            allowed[name] += new
            allowance = Allowance(allowed[name], budget, credit=n_val)
            replay = ReplayLLM(evaluator.llm, allowance, memory[name])
            proposer = ReplayLLM(ctx.proposer, allowance, memory[name])
            lane = Lane(evaluator, name, replay, paid[name], round_no)
            method = optimizers.get(name)(**(self.method_settings or {}).get(name, {}))
            before = budget.spent
            held = budget.reserve(max(0, int(budget.remaining) - new))  # its share only
            try:
                result = method.optimize(ctx.task, lane, proposer, start=ctx.start,
                                         seed=ctx.seed, selection=ctx.selection)
            finally:
                budget.release(held)
            self.lanes_.append(lane)
            self.results_[name] = result
            val = [e.score for e in lane.history
                   if e.split == "val" and not e.failed and e.n == n_val]
            best[name] = max([best.get(name, 0.0), *val])  # over all its runs so far
            entry = {"round": round_no, "method": name, "share": new, "allowance": allowance.limit,
                     "spent": budget.spent - before, "score": best[name],
                     "stopped": result.stopped}
            self.race_.append(entry)
            return entry

        while len(alive) > 1:
            round_no += 1
            share = int(budget.remaining) // rounds_left // len(alive)
            scores = {name: run(name, share)["score"] for name in alive}
            order = sorted(alive, key=lambda n: (-scores[n], names.index(n)))
            alive, rounds_left = order[: math.ceil(len(alive) / 2)], rounds_left - 1
        winner = alive[0]
        while True:  # the last one left: everything that remains, while it can spend it
            round_no += 1
            entry = run(winner, int(budget.remaining))
            if entry["spent"] == 0 or entry["stopped"] != "budget" or budget.remaining < 1:
                break
        self.notes_.append(self.summary(winner))

    def summary(self, winner: str) -> str:
        """One line: each round's contestants with their score and real calls."""
        rounds: dict[int, list[str]] = {}
        for e in self.race_:
            rounds.setdefault(e["round"], []).append(
                f"{e['method']} {e['score']:.4f} ({e['spent']} calls)")
        parts = [f"round {r}: " + ", ".join(v) for r, v in rounds.items()]
        return f"auto: {'; '.join(parts)}; winner {winner}"

    def compared_before(self) -> int:
        """Every template the contestants compared on validation: each finalist of the
        shared choice is the best of its run's (set by :meth:`select_final`)."""
        return getattr(self, "compared_", 0)

    def select_final(
        self,
        ctx: SearchContext,
        evaluations: Sequence[Evaluation],
        selection: Selection | None = None,
    ) -> OptimizeResult:
        """The shared final choice over the start and each contestant's best validated template.

        The best template on validation (not the start) of each run of each contestant
        is a finalist; the shared :meth:`Optimizer.select_final` gets their train
        evaluations, so it ranks exactly these, and their validation scores come from
        the evaluator's memory.
        """
        lanes: list[Lane] = getattr(self, "lanes_", [])
        n_val = len(ctx.val)
        finalists: list[Template] = []
        self.compared_ = 0
        for lane in lanes:
            val = [e for e in lane.history if e.split == "val" and not e.failed
                   and e.n == n_val and e.template.id != ctx.start.id]
            self.compared_ += len({e.template.id for e in val})
            if val:
                best = max(val, key=lambda e: e.score)
                if best.template not in finalists:
                    finalists.append(best.template)
        ids = {t.id for t in finalists}
        pooled: dict[Any, Evaluation] = {}
        for lane in lanes:
            for ev in lane.history:
                if ev.split == "train" and ev.template.id in ids:
                    pooled.setdefault((ev.template.id, ev.example_ids), ev)
        for found in getattr(self, "results_", {}).values():
            ctx.rejected.update(found.rejected)
        candidates = {ev.template.id for lane in lanes for ev in lane.history
                      if ev.split == "train" and not ev.failed} - {ctx.start.id}
        if not candidates:  # the shared choice then says the proposer gave nothing usable
            ctx.proposed = sum(ctx.rejected.values())
        self.final_candidates = max(1, len(finalists))
        result = super().select_final(ctx, list(pooled.values()), selection)
        result.evaluations = len(evaluations)
        result.notes = list(getattr(self, "notes_", [])) + result.notes
        return result

