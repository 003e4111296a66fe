"""DSPy's own optimizers on promptopt's LLMs, budget, metric and tracker.

Sources: DSPy (Khattab et al., "DSPy: Compiling Declarative Language Model Calls into
Self-Improving Pipelines", 2023): ``BootstrapFewShot(WithRandomSearch)`` as
``dspy-bootstrap``; MIPROv2 (Opsahl-Ong et al., "Optimizing Instructions and
Demonstrations for Multi-Stage Language Model Programs", 2024) as ``dspy-mipro``.
The starting template becomes a ``dspy.Predict`` over the signature
``<task.input_fields> -> <task.target_field>`` (instructions: the template's); each
program DSPy produces is exported back into a :class:`Template` (its instructions and
the demos that hold every task field).

- **LM bridge.** DSPy's task and prompt models are ``dspy.LM`` objects with the
  recovery / proposer model string and a custom engine (DSPy 3.4's ``complete(Request)
  -> Response`` extension point; ``BaseLM.forward`` is deprecated there) that sends
  every request through promptopt's :class:`LLM`: charged to the shared budget, cached,
  counted. DSPy's response cache and retries are off; sampled calls get seeds derived
  from the search seed.
- **Adapter.** Task-signature calls are made by the task's own query
  (``task.predict``: rendered by ``task.render``, read by ``task.parse``, or label
  log-probs for classification), so a program and its exported template send identical
  requests (a base model never sees DSPy's chat markup). Other signatures (MIPROv2's proposer) use
  ``ChatAdapter``; a reply ignoring its format is taken as the single output's text.
- **Trials.** When DSPy scores a candidate (``dspy.Evaluate``), a callback first runs
  ``ctx.evaluate`` on its template and the same train examples; DSPy's per-example
  calls are then answered from that evaluation. So each call is charged once, every
  candidate is a trial, and ``select_final`` ranks them. An instruction that
  ``ctx.accept`` rejects is never run (DSPy sees score 0).
- **Stopping.** ``BudgetExhausted`` (or any LLM error) inside DSPy travels as
  ``Stop``, a ``BaseException`` that DSPy's ``except Exception`` handlers let
  through; the search re-raises the original error, and what was evaluated counts.

Left out: multi-module programs, threads (``num_threads=1``), bootstrap rounds beyond
the first, MIPROv2's program-aware proposer (one ``Predict`` is no program worth
describing) and minibatching (candidates share ``eval_size`` train examples), and
DSPy's pick of the best program (``select_final`` decides on the validation split).

The bridge (engine, adapter, recorder, :class:`Run`) is in
:mod:`promptopt.optimizers._dspy_bridge`; this module holds the two optimizers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

from promptopt.optimizers._base import Optimizer
from promptopt.optimizers._dspy_bridge import Run, Stop
from promptopt.registry import optimizers
from promptopt.search import SearchContext

_LEVELS = {"light": (6, 10), "medium": (12, 18), "heavy": (18, 27)}
"""MIPROv2 ``auto`` level -> (candidates, trials) that DSPy derives for one predictor."""
MAX_RANDOM_CANDIDATES = 16


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


class _DSPyOptimizer(Optimizer):
    """Runs a DSPy optimizer on the task (see the module docstring)."""

    max_bootstrapped_demos: int
    max_labeled_demos: int
    eval_size: int
    metric_threshold: float | None

    def validate(self) -> None:
        """Check the shared settings."""
        for name, least in (("max_bootstrapped_demos", 0), ("max_labeled_demos", 0),
                            ("eval_size", 1)):
            self._check(_is_int(getattr(self, name), least), name, f"must be an integer >= {least}")
        threshold = self.metric_threshold
        self._check(threshold is None or (isinstance(threshold, (int, float))
                                          and not isinstance(threshold, bool)),
                    "metric_threshold", "must be a number or None")

    def _compile(self, run: Run) -> Any:
        raise NotImplementedError

    def search(self, ctx: SearchContext) -> None:
        """Compile the program with DSPy; every candidate it scores is a train trial."""
        run = Run(ctx, self.eval_size)
        log = logging.getLogger("dspy")  # DSPy narrates every step and warns about its own calls
        level = log.level
        log.setLevel(max(level, logging.ERROR))
        try:
            with run.dspy.context(**run.settings), contextlib.redirect_stdout(io.StringIO()):
                compiled = self._compile(run)
                run.prepare(compiled, run.valset)  # DSPy's own pick is always a candidate
        except Stop as stop:
            raise stop.error from None
        finally:
            log.setLevel(level)
        if run.error is not None:  # swallowed somewhere inside DSPy
            raise run.error


@optimizers.register("dspy-bootstrap")
class DSPyBootstrap(_DSPyOptimizer):
    """DSPy's ``BootstrapFewShotWithRandomSearch``; plain ``BootstrapFewShot`` on small budgets.

    Random search scores three fixed candidates (zero-shot, labeled demos only,
    unshuffled bootstrap) plus ``num_candidate_programs`` random bootstraps. With
    ``E`` eval examples and ``D`` demos to bootstrap (at most the demo pool), the fixed
    part costs about ``3E + D`` calls and each random candidate ``E + D``. When
    ``num_candidate_programs`` is None it is as many as the search budget (what is
    left after the validation reserve) pays for, at most 16; when that is less than
    one (the budget is under ``4E + 2D``), or the setting is 0, the search is one
    ``BootstrapFewShot`` compile (``D + E`` calls).

    Args:
        max_bootstrapped_demos: Most demos bootstrapped from the program's own traces.
        max_labeled_demos: Most demos in total (raw train examples fill the rest).
        num_candidate_programs: Random demo sets to try (None: from the budget).
        eval_size: Train examples each candidate is scored on (at most half the
            train split; the other examples are the demo pool).
        metric_threshold: Lowest score for a trace to become a demo (None: any
            positive score, DSPy's rule).
    """

    def __init__(
        self,
        *,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        num_candidate_programs: int | None = None,
        eval_size: int = 8,
        metric_threshold: float | None = None,
    ) -> None:
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.num_candidate_programs = num_candidate_programs
        self.eval_size = eval_size
        self.metric_threshold = metric_threshold

    def validate(self) -> None:
        """Check the settings."""
        super().validate()
        self._check(self.num_candidate_programs is None or _is_int(self.num_candidate_programs, 0),
                    "num_candidate_programs", "must be None or an integer >= 0")

    def candidates(self, budget_left: float, n_eval: int, n_pool: int) -> int:
        """Random candidates to try (0: plain ``BootstrapFewShot``)."""
        if self.num_candidate_programs is not None:
            return int(self.num_candidate_programs)
        if math.isinf(budget_left):
            return MAX_RANDOM_CANDIDATES
        d = min(self.max_bootstrapped_demos, n_pool)
        spare = budget_left - (3 * n_eval + d)
        return max(0, min(MAX_RANDOM_CANDIDATES, int(spare // (n_eval + d))))

    def _compile(self, run: Run) -> Any:
        n = self.candidates(run.budget_left, len(run.valset), len(run.trainset))
        common = {"metric": run.metric, "metric_threshold": self.metric_threshold,
                  "max_bootstrapped_demos": self.max_bootstrapped_demos,
                  "max_labeled_demos": self.max_labeled_demos}
        if n == 0:
            run.label = "BootstrapFewShot"
            return run.dspy.BootstrapFewShot(**common).compile(run.program, trainset=run.trainset)
        run.label = f"BootstrapFewShotWithRandomSearch ({n} random candidates)"
        search = run.dspy.BootstrapFewShotWithRandomSearch(
            **common, num_candidate_programs=n, num_threads=1)
        return search.compile(run.program, trainset=run.trainset, valset=run.valset)


@optimizers.register("dspy-mipro")
class DSPyMIPRO(_DSPyOptimizer):
    """DSPy's MIPROv2: bootstrapped demo sets, grounded instruction proposals, TPE over both.

    ``auto`` None picks the heaviest level whose estimated cost fits the search
    budget (``E`` eval examples, ``D`` demos, ``n`` candidates, ``t`` trials per
    level: light 6/10, medium 12/18, heavy 18/27): about ``(n - 2)D`` bootstrap calls,
    2 dataset-summary calls, ``n/2`` proposals and ``(t + 1)E`` evaluations (repeated
    candidates cost nothing). Below light it runs ``num_candidates=3`` (DSPy's three
    fixed demo sets, two new instructions) with as many trials as fit (at least one).
    An unbounded budget runs light, DSPy's default. With ``num_trials`` set, DSPy runs
    that many trials over the level's ``n`` candidates (light when ``auto`` is None).

    Args:
        max_bootstrapped_demos: Most bootstrapped demos per demo set.
        max_labeled_demos: Most labeled demos per demo set.
        auto: ``"light"``, ``"medium"``, ``"heavy"`` or None (from the budget).
        num_trials: Candidate programs TPE tries (None: from ``auto``/the budget).
        eval_size: Train examples each candidate is scored on (at most half the
            train split; the other examples are the demo pool and data summary).
        metric_threshold: Lowest score for a trace to become a demo.
    """

    def __init__(
        self,
        *,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 4,
        auto: str | None = None,
        num_trials: int | None = None,
        eval_size: int = 8,
        metric_threshold: float | None = None,
    ) -> None:
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.auto = auto
        self.num_trials = num_trials
        self.eval_size = eval_size
        self.metric_threshold = metric_threshold

    def validate(self) -> None:
        """Check the settings."""
        super().validate()
        self._check(self.auto is None or self.auto in _LEVELS, "auto",
                    f"must be None or one of {sorted(_LEVELS)}")
        self._check(self.num_trials is None or _is_int(self.num_trials, 1), "num_trials",
                    "must be None or an integer >= 1")

    def plan(self, budget_left: float, n_eval: int, n_pool: int) -> dict[str, Any]:
        """MIPROv2 arguments: ``auto``, or ``num_candidates`` and ``num_trials``."""
        if self.num_trials is not None:
            n = _LEVELS[self.auto or "light"][0]
            return {"auto": None, "num_candidates": n, "num_trials": self.num_trials}
        if self.auto is not None or math.isinf(budget_left):
            return {"auto": self.auto or "light"}
        d = min(self.max_bootstrapped_demos, n_pool)
        for level in ("heavy", "medium", "light"):
            n, t = _LEVELS[level]
            if (n - 2) * d + 2 + n // 2 + (t + 1) * n_eval <= budget_left:
                return {"auto": level}
        trials = int(budget_left - d - 5) // n_eval - 1
        return {"auto": None, "num_candidates": 3, "num_trials": max(1, trials)}

    def _compile(self, run: Run) -> Any:
        import optuna

        plan = self.plan(run.budget_left, len(run.valset), len(run.trainset))
        run.label = "MIPROv2 " + ", ".join(f"{k}={v}" for k, v in plan.items() if v)
        mipro = run.dspy.MIPROv2(
            metric=run.metric, prompt_model=run.prompt_lm, task_model=run.task_lm,
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos, auto=plan["auto"],
            num_candidates=plan.get("num_candidates"), num_threads=1, seed=run.ctx.seed,
            metric_threshold=self.metric_threshold)
        verbosity = optuna.logging.get_verbosity()  # MIPROv2 lowers it process-wide
        try:
            return mipro.compile(
                run.program, trainset=run.trainset, valset=run.valset, seed=run.ctx.seed,
                num_trials=plan.get("num_trials"), minibatch=False, program_aware_proposer=False)
        finally:
            optuna.logging.set_verbosity(verbosity)


@optimizers.register("dspy-gepa")
class DSPyGEPA(_DSPyOptimizer):
    """DSPy's ``dspy.GEPA`` on the task program, with DSPy's defaults.

    The reflection LM is the proposer; the metric returns
    ``dspy.Prediction(score=..., feedback=...)`` with the task's feedback text
    (:meth:`Task.feedback`). GEPA tracks its Pareto scores on ``eval_size`` train
    examples and reflects on minibatches of the others; ``max_metric_calls`` is the
    search budget (what is left after the validation reserve), and a stop condition ends
    it when the budget cannot pay for another iteration. Reflective minibatch runs go
    through the task's query but are not trials; full evaluations on the Pareto
    examples are (DSPy's ``Evaluate``, recorded as for the other dspy-* methods).

    Args:
        reflection_minibatch_size: Train examples shown per reflection.
        candidate_selection_strategy: ``"pareto"`` or ``"current_best"``.
        skip_perfect_score: Do not reflect on a minibatch the program already aces.
        use_merge: Try merging candidates (DSPy's default: on).
        max_merge_invocations: Merges at most.
        eval_size: Train examples in GEPA's Pareto set (the rest are reflected on).
        max_metric_calls: Example evaluations at most (None: from the budget).
        max_bootstrapped_demos, max_labeled_demos, metric_threshold: unused by GEPA (an
            instruction search); kept for the shared dspy-* settings.
    """

    def __init__(
        self,
        *,
        reflection_minibatch_size: int = 3,
        candidate_selection_strategy: str = "pareto",
        skip_perfect_score: bool = True,
        use_merge: bool = True,
        max_merge_invocations: int = 5,
        eval_size: int = 8,
        max_metric_calls: int | None = None,
        max_bootstrapped_demos: int = 0,
        max_labeled_demos: int = 0,
        metric_threshold: float | None = None,
    ) -> None:
        self.reflection_minibatch_size = reflection_minibatch_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.skip_perfect_score = skip_perfect_score
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.eval_size = eval_size
        self.max_metric_calls = max_metric_calls
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.metric_threshold = metric_threshold

    def validate(self) -> None:
        """Check the settings."""
        super().validate()
        self._check(_is_int(self.reflection_minibatch_size, 1), "reflection_minibatch_size",
                    "must be an integer >= 1")
        self._check(self.candidate_selection_strategy in ("pareto", "current_best"),
                    "candidate_selection_strategy", "must be pareto or current_best")
        self._check(_is_int(self.max_merge_invocations, 0), "max_merge_invocations",
                    "must be an integer >= 0")
        self._check(self.max_metric_calls is None or _is_int(self.max_metric_calls, 1),
                    "max_metric_calls", "must be None or an integer >= 1")

    def _compile(self, run: Run) -> Any:
        dspy, ctx = run.dspy, run.ctx
        need = 2 * self.reflection_minibatch_size + 1
        calls = self.max_metric_calls
        if calls is None:
            calls = 10**9 if math.isinf(run.budget_left) else max(1, int(run.budget_left))

        def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                   pred_trace: Any = None) -> Any:
            score = run.metric(gold, pred, trace)
            text = str(pred.get(run.fields[-1]) or "")
            example = run.by_inputs.get(run.key(gold))
            if example is None:
                return dspy.Prediction(score=score, feedback=f"Score {score:.2f}.")
            return dspy.Prediction(score=score,
                                   feedback=ctx.task.feedback(text, example, score))

        run.label = "GEPA"
        gepa = dspy.GEPA(
            metric=metric, max_metric_calls=calls, reflection_lm=run.prompt_lm,
            reflection_minibatch_size=self.reflection_minibatch_size,
            candidate_selection_strategy=self.candidate_selection_strategy,
            skip_perfect_score=self.skip_perfect_score, use_merge=self.use_merge,
            max_merge_invocations=self.max_merge_invocations, num_threads=1,
            seed=ctx.seed, warn_on_score_mismatch=False,
            gepa_kwargs={"stop_callbacks": [lambda state: not ctx.can_afford(need)]})
        return gepa.compile(run.program, trainset=run.trainset, valset=run.valset)
