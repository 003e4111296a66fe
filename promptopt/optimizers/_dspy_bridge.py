"""The bridge between DSPy and promptopt: DSPy's LMs, adapter and evaluation on our parts.

:class:`Run` holds one search's DSPy program and data, and answers DSPy's calls with
promptopt's: :class:`Engine` sends every LM request through a promptopt :class:`LLM`
(charged to the budget, cached, counted), the task adapter made by :func:`dspy_kit`
answers task-signature calls with the task's own query, and its recorder turns each
``dspy.Evaluate`` into one promptopt evaluation. :class:`Stop` carries a promptopt
error through DSPy's handlers. :func:`export_template` turns a DSPy predictor into a
:class:`Template`. The optimizers on top are in :mod:`promptopt.optimizers._dspy`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from promptopt.data import Example
from promptopt.errors import PromptoptError
from promptopt.llm import LLM
from promptopt.search import PROPOSER_MAX_TOKENS, SearchContext, read_proposal
from promptopt.template import Template

MARKER = re.compile(r"\[\[\s*##\s*\w+\s*##\s*\]\]")


class Stop(BaseException):
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
def dspy_kit() -> tuple[Any, type, type]:
    """Import DSPy (lazily: it is slow to import) and define the classes built on it."""
    import dspy
    from dspy.utils.callback import BaseCallback
    from dspy.utils.exceptions import AdapterParseError

    class TaskAdapter(dspy.ChatAdapter):  # type: ignore[misc]
        def __init__(self, run: Run) -> None:
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
                raw = MARKER.sub(" ", str(exc.lm_response or ""))
                text = read_proposal(raw, echo_labels=self.run.ctx.echo_labels)
                return [{next(iter(signature.output_fields)): text}]

    class Recorder(BaseCallback):  # type: ignore[misc]
        def __init__(self, run: Run) -> None:
            self.run = run

        def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self.run.prepare(inputs["program"], inputs.get("devset") or instance.devset)

    return dspy, TaskAdapter, Recorder


class Engine:
    """A DSPy engine (``complete(Request) -> Response``) over a promptopt :class:`LLM`."""

    def __init__(self, run: Run, llm: LLM) -> None:
        self.run, self.llm = run, llm

    def complete(self, request: Any) -> Any:
        """One charged, cached completion."""
        return self.run.complete(self.llm, request)

    def close(self) -> None:
        """Nothing to release: promptopt's LLM owns the connection."""


class Run:
    """One search: DSPy's program, data (``trainset``: the demo pool; ``valset``: what
    candidates are scored on; disjoint unless train is tiny), LMs, and the glue."""

    def __init__(self, ctx: SearchContext, eval_size: int) -> None:
        self.ctx = ctx
        self.dspy, adapter_cls, recorder_cls = dspy_kit()
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
        self.task_lm = dspy.LM(llm.model, engine=Engine(self, llm), temperature=0.0, **options)
        self.prompt_lm = dspy.LM(ctx.proposer.model, engine=Engine(self, ctx.proposer),
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

    def _fail(self, error: PromptoptError) -> Stop:
        self.error = self.error or error
        return Stop(error)

    def prepare(self, program: Any, devset: Sequence[Any]) -> None:
        """Evaluate ``program``'s template on the new ``devset`` examples (rejected: no call)."""
        predictor = program.predictors()[0]
        template = self.template(predictor.signature.instructions, predictor.demos)
        found = {e.id: e for e in (self.by_inputs.get(self.key(x)) for x in devset) if e}
        todo = sorted((e for e in found.values() if (template.id, e.id) not in self.served),
                      key=lambda e: self.order[e.id])
        if not todo:
            return
        if not self.is_usable(template.instruction):
            self.served.update({(template.id, e.id): "" for e in todo})
            return
        parents = [] if template.id == self.ctx.start.id else [self.ctx.start.id]
        try:
            ev = self.ctx.evaluate(template, todo, parents=parents, meta={"dspy": self.label})
        except PromptoptError as exc:
            raise self._fail(exc) from exc
        for example_id, prediction in zip(ev.example_ids, ev.predictions, strict=True):
            self.served[(template.id, example_id)] = prediction

    def is_usable(self, text: str) -> bool:
        """Whether the instruction passes :meth:`SearchContext.accept` (asked once)."""
        if text not in self.usable:
            self.usable[text] = self.ctx.accept(text) is not None
        return self.usable[text]

    def predict(self, lm: Any, instructions: str, demos: Sequence[Any], inputs: Any) -> str:
        """The task program's prediction: served from an evaluation, or one query.

        The query is the task's own (:meth:`Task.predict`, as the evaluator makes it) on
        the promptopt :class:`LLM` behind ``lm``: the same request, cache entry and charge.
        """
        template = self.template(instructions, demos)
        example = self.by_inputs.get(self.key(inputs))
        if example is not None and (template.id, example.id) in self.served:
            return self.served[(template.id, example.id)]
        if not self.is_usable(template.instruction):  # a rejected proposal is never run
            return ""
        if example is None:
            example = Example(id="", inputs={name: str(inputs[name]) for name in self.fields[:-1]})
        engine = getattr(lm, "engine", None)
        llm = engine.llm if isinstance(engine, Engine) else self.ctx.evaluator.llm
        try:
            return self.ctx.task.predict(llm, template, [example])[0]
        except PromptoptError as exc:
            raise self._fail(exc) from exc

    def complete(self, llm: LLM, request: Any) -> Any:
        """Send one DSPy request through ``llm`` (charged); see :class:`Engine`."""
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
