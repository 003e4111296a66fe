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
  ``_Stop``, a ``BaseException`` that DSPy's ``except Exception`` handlers let
  through; the search re-raises the original error, and what was evaluated counts.

Left out: multi-module programs, threads (``num_threads=1``), bootstrap rounds beyond
the first, MIPROv2's program-aware proposer (one ``Predict`` is no program worth
describing) and minibatching (candidates share ``eval_size`` train examples), and
DSPy's pick of the best program (``select_final`` decides on the validation split).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from promptopt.data import Example
from promptopt.errors import PromptoptError
from promptopt.llm import LLM
from promptopt.optimizers._base import (
    PROPOSER_MAX_TOKENS,
    Optimizer,
    SearchContext,
    read_proposal,
)
from promptopt.registry import optimizers
from promptopt.template import Template

_MARKER = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")
_LEVELS = {"light": (6, 10), "medium": (12, 18), "heavy": (18, 27)}
"""MIPROv2 ``auto`` level -> (candidates, trials) that DSPy derives for one predictor."""
MAX_RANDOM_CANDIDATES = 16


class _Stop(BaseException):
    """Carries a promptopt error through DSPy's ``except Exception`` handlers."""

    def __init__(self, error: PromptoptError) -> None:
        super().__init__(str(error))
        self.error = error


def export_template(
    instructions: str, demos: Iterable[Any], base: Template, fields: Sequence[str]
) -> Template:
    """``base`` with a DSPy predictor's instructions and demos.

    Args:
        instructions: The predictor's ``signature.instructions``.
        demos: Its ``demos`` (``dspy.Example`` objects or dicts).
        base: Supplies the answer prefix and suffix.
        fields: Input fields, then the target; demos missing one (or holding a
            non-string value) are dropped.
    """
    rows = [{name: demo.get(name) for name in fields} for demo in demos]
    return base.replace(instruction=instructions).with_demos(
        row for row in rows if all(isinstance(value, str) for value in row.values())
    )


@functools.cache
def _dspy_kit() -> tuple[Any, type, type]:
    """Import DSPy (lazily: it is slow to import) and define the classes built on it."""
    import dspy
    from dspy.utils.callback import BaseCallback
    from dspy.utils.exceptions import AdapterParseError

    class TaskAdapter(dspy.ChatAdapter):  # type: ignore[misc]
        def __init__(self, run: _Run) -> None:
            super().__init__(use_json_adapter_fallback=False)
            self.run = run

        def __call__(self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: Any) -> Any:
            fields = (*signature.input_fields, *signature.output_fields)
            if fields == self.run.fields and len(signature.output_fields) == 1:
                return [{fields[-1]: self.run.predict(lm, signature.instructions, demos, inputs)}]
            try:
                return super().__call__(lm, lm_kwargs, signature, demos, inputs)
            except AdapterParseError as exc:  # a weak proposer ignored the format
                if len(signature.output_fields) != 1:
                    raise
                raw = _MARKER.sub(" ", str(exc.lm_response or ""))
                text = read_proposal(raw, echo_labels=self.run.ctx.echo_labels)
                return [{next(iter(signature.output_fields)): text}]

    class Recorder(BaseCallback):  # type: ignore[misc]
        def __init__(self, run: _Run) -> None:
            self.run = run

        def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self.run.prepare(inputs["program"], inputs.get("devset") or instance.devset)

    return dspy, TaskAdapter, Recorder


class _Engine:
    """A DSPy engine (``complete(Request) -> Response``) over a promptopt :class:`LLM`."""

    def __init__(self, run: _Run, llm: LLM) -> None:
        self.run, self.llm = run, llm

    def complete(self, request: Any) -> Any:
        """One charged, cached completion."""
        return self.run.complete(self.llm, request)

    def close(self) -> None:
        """Nothing to release: promptopt's LLM owns the connection."""


class _Run:
    """One search: DSPy's program, data (``trainset``: the demo pool; ``valset``: what
    candidates are scored on; disjoint unless train is tiny), LMs, and the glue."""

    def __init__(self, ctx: SearchContext, eval_size: int) -> None:
        self.ctx = ctx
        self.dspy, adapter_cls, recorder_cls = _dspy_kit()
        dspy = self.dspy
        self.fields = (*ctx.task.input_fields, ctx.task.target_field)
        inputs, target = self.fields[:-1], self.fields[-1]
        self.order = {e.id: i for i, e in enumerate(ctx.train)}
        self.by_inputs = {self.key(e.inputs): e for e in ctx.train}
        self.served: dict[tuple[str, str], str] = {}
        self.usable: dict[str, bool] = {ctx.start.instruction: True}
        self.error: PromptoptError | None = None
        self.label = ""
        self._sampled = 0
        train = list(ctx.train)
        ctx.rng.shuffle(train)
        n_eval = min(eval_size, max(1, len(train) // 2))
        self.valset, self.trainset = (
            [dspy.Example(**e.as_fields(target)).with_inputs(*inputs) for e in part]
            for part in (train[:n_eval], train[n_eval:] or train)
        )
        fields = {name: dspy.InputField() for name in inputs}
        fields[target] = dspy.OutputField()
        self.program = dspy.Predict(dspy.Signature(fields, ctx.start.instruction))
        options: dict[str, Any] = {"cache": False, "num_retries": 0}
        llm = ctx.evaluator.llm
        self.task_lm = dspy.LM(llm.model, engine=_Engine(self, llm), temperature=0.0, **options)
        self.prompt_lm = dspy.LM(ctx.proposer.model, engine=_Engine(self, ctx.proposer),
                                 max_tokens=PROPOSER_MAX_TOKENS, **options)
        budget = ctx.evaluator.budget
        self.budget_left = float("inf") if budget is None else float(budget.remaining)
        self.settings = {"lm": self.task_lm, "adapter": adapter_cls(self), "num_threads": 1,
                         "callbacks": [recorder_cls(self)], "disable_history": True}

    def key(self, values: Any) -> tuple[str, ...]:
        """The input values of an example (a mapping or ``dspy.Example``)."""
        return tuple(str(values.get(name, "")) for name in self.fields[:-1])

    def template(self, instructions: str, demos: Iterable[Any]) -> Template:
        """The template a predictor with these instructions and demos stands for.

        A bootstrapped demo's answer is a prediction; the task's ``answer_text`` turns it
        into the answer a demo shows (a classification prediction into its label).
        """
        target = self.fields[-1]
        rows = []
        for demo in demos:
            row = {name: demo.get(name) for name in self.fields}
            if isinstance(row[target], str):
                row[target] = self.ctx.task.answer_text(row[target])
            rows.append(row)
        return export_template(instructions, rows, self.ctx.start, self.fields)

    def _fail(self, error: PromptoptError) -> _Stop:
        self.error = self.error or error
        return _Stop(error)

    def prepare(self, program: Any, devset: Sequence[Any]) -> None:
        """Evaluate ``program``'s template on the new ``devset`` examples (rejected: no call)."""
        predictor = program.predictors()[0]
        template = self.template(predictor.signature.instructions, predictor.demos)
        found = {e.id: e for e in (self.by_inputs.get(self.key(x)) for x in devset) if e}
        todo = sorted((e for e in found.values() if (template.id, e.id) not in self.served),
                      key=lambda e: self.order[e.id])
        if not todo:
            return
        text = template.instruction
        if text not in self.usable:
            self.usable[text] = self.ctx.accept(text) is not None
        if not self.usable[text]:
            self.served.update({(template.id, e.id): "" for e in todo})
            return
        parents = [] if template.id == self.ctx.start.id else [self.ctx.start.id]
        try:
            ev = self.ctx.evaluate(template, todo, parents=parents, meta={"dspy": self.label})
        except PromptoptError as exc:
            raise self._fail(exc) from exc
        for example_id, prediction in zip(ev.example_ids, ev.predictions, strict=True):
            self.served[(template.id, example_id)] = prediction

    def predict(self, lm: Any, instructions: str, demos: Sequence[Any], inputs: Any) -> str:
        """The task program's prediction: served from an evaluation, or one query.

        The query is the task's own (:meth:`Task.predict`, as the evaluator makes it) on
        the promptopt :class:`LLM` behind ``lm``: the same request, cache entry and charge.
        """
        template = self.template(instructions, demos)
        example = self.by_inputs.get(self.key(inputs))
        if example is not None and (template.id, example.id) in self.served:
            return self.served[(template.id, example.id)]
        if example is None:
            example = Example(id="", inputs={name: str(inputs[name]) for name in self.fields[:-1]})
        engine = getattr(lm, "engine", None)
        llm = engine.llm if isinstance(engine, _Engine) else self.ctx.evaluator.llm
        try:
            return self.ctx.task.predict(llm, template, [example])[0]
        except PromptoptError as exc:
            raise self._fail(exc) from exc

    def complete(self, llm: LLM, request: Any) -> Any:
        """Send one DSPy request through ``llm`` (charged); see :class:`_Engine`."""
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = []
        if request.system is not None:
            system = request.system
            text = system if isinstance(system, str) else "".join(p.text for p in system)
            messages.append({"role": "system", "content": text})
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        config, seed = request.config, request.config.seed
        if seed is None and config.temperature:  # DSPy's rollout ids never reach an engine
            self._sampled += 1
            seed = self.ctx.seed * 1_000_003 + self._sampled
        try:
            text = llm.complete(messages, temperature=config.temperature, seed=seed,
                                max_tokens=config.max_tokens, stop=list(config.stop) or None)
        except PromptoptError as exc:
            raise self._fail(exc) from exc
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0))

    def metric(self, example: Any, prediction: Any, trace: Any = None) -> float:
        """The task's score of a prediction (0 for the empty one of a rejected template)."""
        text = str(prediction.get(self.fields[-1]) or "")
        if not text:
            return 0.0
        target = Example(id="", inputs={}, target=str(example.get(self.fields[-1], "")))
        return float(self.ctx.task.score([text], [target])[0])


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

    def _compile(self, run: _Run) -> Any:
        raise NotImplementedError

    def search(self, ctx: SearchContext) -> None:
        """Compile the program with DSPy; every candidate it scores is a train trial."""
        run = _Run(ctx, self.eval_size)
        log = logging.getLogger("dspy")  # DSPy narrates every step and warns about its own calls
        level = log.level
        log.setLevel(max(level, logging.ERROR))
        try:
            with run.dspy.context(**run.settings), contextlib.redirect_stdout(io.StringIO()):
                compiled = self._compile(run)
                run.prepare(compiled, run.valset)  # DSPy's own pick is always a candidate
        except _Stop as stop:
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

    def _compile(self, run: _Run) -> Any:
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

    def _compile(self, run: _Run) -> Any:
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
