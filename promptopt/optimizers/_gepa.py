"""GEPA: reflective prompt evolution with a Pareto front, run by the ``gepa`` package.

Agrawal et al. 2025, "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement
Learning" (arXiv:2507.19457). Each iteration picks a parent from the Pareto front of
candidates (those best on at least one example of the "Pareto set"), runs it on a
small reflection minibatch, shows the proposer (the reflection LM) the inputs, outputs
and the metric's feedback text (:meth:`Task.feedback`), and asks for a better
instruction; the child is kept when it beats its parent on that minibatch, and is then
scored on the whole Pareto set. Optionally ("merge"), two descendants of a common
ancestor are combined.

This module runs the ``gepa`` package's own engine (:func:`gepa.optimize`) through a
:class:`GEPAAdapter` whose ``evaluate`` is :meth:`SearchContext.evaluate` (so the
budget, cache, tracker, resume and workers apply, and every candidate is recorded with
its parent) and whose ``propose_new_texts`` asks the proposer (:meth:`SearchContext.
propose`) with a reflection prompt of ours (:data:`ANSWERS_PROMPT`); an unusable
proposal (empty, cut off, an echo, a duplicate, invalid for the task) is rejected and
counted by :meth:`SearchContext.accept`, never evaluated.

Data: GEPA's own "validation set" (the Pareto set) is drawn from promptopt's **train**
split (``pareto_size`` examples, seeded); the reflection minibatches come from the rest
of the train split (``reflect_on="rest"``, the default; all of it when too little is
left) or from the Pareto set itself (``"pareto"``, the package's own default when it is
given no separate validation set). With ``reuse_scores`` a candidate's output on an
example it has run on is reused: reflecting on the Pareto set, a parent's minibatch
then costs nothing and a child pays for each Pareto-set example once (about twice the
reflections on the same budget; measured in docs/BENCHMARKS.md, where it also made
``make demo`` 2.5x slower, which is why it is not the default). promptopt's validation
split stays reserved for the final choice, as for every method.

Budget: the engine stops when the budget cannot pay for another iteration (a proposal
and the evaluations it needs), or when an evaluation or proposal finds it exhausted;
``max_metric_calls`` (the package's own stopper, in example evaluations) may stop it
earlier.

Components: a candidate holds the template's instruction and, where the task lets the
answer start with chosen words (prompt recovery does: ``Rewrite this text`` ...), its
answer prefix; demos and suffix are inherited from the start. Each iteration reflects
on one component in turn (the package's ``module_selector``, ``"round_robin"``) or on
all of them (``"all"``); the instruction with :data:`INSTRUCTION_PROMPT`, the answer
prefix with :data:`PREFIX_PROMPT`. A chat-model proposer is asked for a ````` block; a
base model's prompt ends inside one, which it continues. The package's merge
recombines the components of two descendants of a common ancestor.

Left out: no multi-objective frontiers other than the package's ``frontier_type``
options, no run directory (promptopt's study is the record), no wandb/mlflow.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, cast

from promptopt.data import Example
from promptopt.errors import BudgetExhausted, ConfigError, PromptoptError
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import SearchContext, looks_truncated
from promptopt.template import Template

COMPONENT = "instruction"
PREFIX = "answer_prefix"
COMPONENTS = (COMPONENT, PREFIX)
REFLECTION_MAX_TOKENS = 300
FEEDBACK_PROMPT = """<task_brief>An assistant was given this instruction:
```
<curr_param>
```

Below are examples it worked on: what it read (Inputs), what it answered (Generated \
Outputs), and feedback that compares its answer with the correct answer.

<side_info>

Write a better instruction for the assistant, so that its answers come closer to the \
correct answers in the feedback. Say what a good answer looks like (its wording, length \
and form, as in the correct answers) and what to look for in the inputs. Write it for \
any input of this kind, not for these examples alone. Reply with the new instruction \
only, inside ``` blocks."""
"""The earlier reflection prompt for the instruction (``reflection_style="feedback"``;
``<task_brief>``: what the assistant must do,
the task's ``brief``; ``<curr_param>``: the parent's instruction; ``<side_info>``: the
minibatch's inputs, outputs and feedback, rendered by the package).
Shorter and more direct than the package's own (which a 1.5B instruct model answered
with "Certainly, I'd be happy to help ... Please provide the details of the task"): it
says what the feedback is for and asks for the instruction alone."""
ANSWERS_PROMPT = """<task_brief>An assistant answers by following an instruction. Its \
instruction now:
```
<curr_param>
```

Here is what it answered on some inputs, beside the correct answer and how close the two \
are (1.00: the same):

<side_info>

Improve the instruction so that the assistant's answers come closer to the correct \
answers. Keep what it asks, and add one or two sentences that say what a correct answer \
looks like (how it begins, its length, its words), quoting one of the correct answers above \
as an example. Reply with the whole new instruction only, inside ``` blocks."""
"""The reflection prompt for the instruction (``reflection_style="answers"``, the default;
``<side_info>``: each minibatch example's correct answer first, then the assistant's
answer, its score and the inputs). Shown the feedback text after the inputs and asked for
"a better instruction", the 1.5B proposer paraphrased the parent ("Read the instruction,
then ...") in most reflections; shown the correct answers first and asked to say what one
looks like, quoting one, it added sentences such as 'The instruction should start with
"Refine the original text to ..."', which is what the metric rewards."""
INSTRUCTION_PROMPT = ANSWERS_PROMPT
"""The default reflection prompt for the instruction."""

PREFIX_PROMPT = """Each answer of an assistant begins with opening words written for it, \
and the assistant goes on from them. Its opening words now (empty: none):
```
<curr_param>
```

Its answers (opening words included), each with the correct answer:

<side_info>

Which few words do most of the correct answers begin with? Reply with only those \
opening words (one to four words), inside ``` blocks."""
"""The reflection prompt for the answer prefix (``<curr_param>``: the parent's prefix;
``<side_info>``: the minibatch's answers, each with the correct answer, and nothing
else: the inputs and the feedback's labels say nothing about how an answer begins, and a
1.5B proposer shown them answered with their words ("True", "Predicted prompt"). A
direct question a small model answers: the 1.5B answered "Rewrite" for prompt-recovery
answers where the earlier, longer request got "No words" and "Write a one-sentence
instruction"."""
RETRY_NOTE = ("Your last reply to this request was not used: {why}. Reply with a changed "
              "instruction, inside ``` blocks.")
"""Added to an instruction reflection asked again (``second_chance``). In one run of the
quality benchmark (seed 2, the 1.5B proposing), 4 of about 10 reflections were rejected as
echoes of the parent, each one ending an iteration whose minibatch evaluation was paid."""
WHY_NOT_USED = {
    "echo of parent": "it was the instruction above, unchanged",
    "duplicate": "it was an instruction tried before",
    "truncated": "it was cut off; write a shorter one",
    "too long": "it was too long",
    "echo of prompt": "it copied this request instead of writing an instruction",
    "echo of an example": "it copied an input text instead of writing an instruction",
    "no task content": "it was not an instruction for this task",
    "invalid for task": "it was not an instruction for this task",
    "empty": "it held no instruction inside ``` blocks",
}
"""Why a rejected reflection was not used (by the context's rejection reason), in words
the proposer can act on."""
STYLES = ("answers", "feedback")
INSTRUCTION_PROMPTS = {"answers": ANSWERS_PROMPT, "feedback": FEEDBACK_PROMPT}
_FENCE = re.compile(r"^```[^\n]*\n?")
_OPENING = re.compile(r"```[^\n`]*\n")
_INLINE = re.compile(r"```([^`\n]+)```")


def read_fenced(raw: str, *, opened: bool = True) -> tuple[str, bool]:
    """The text in a reflection answer's ````` block, and whether the block was closed.

    ``opened``: the prompt ended inside an opened block (as for a base model, which
    continues with the text and may close the block). Else (a chat model, asked for a
    block) the answer's first block is read, after any preamble ("Here it is:"); an
    answer that opens no block is read up to a closing fence, or taken whole. An answer
    that opens a block of its own first is read from inside it either way.
    """
    text = (raw or "").lstrip()
    inline = _INLINE.match(text) if opened else _INLINE.search(text)
    if inline and (opened or not _OPENING.search(text[: inline.start()])):
        return inline.group(1).strip(), True  # ```Rewrite``` on one line
    start = _FENCE.match(text) if opened else _OPENING.search(text)
    if start is not None:
        text = text[start.end():]
    body, sep, _ = text.partition("```")  # no opening fence: the text up to a closing one
    return body.strip(), bool(sep)


def first_prefix(text: str) -> str:
    """The opening words a prefix reflection proposes: its first non-empty line, and of a
    list of single words or pairs ("Make, Rewrite, Notice"), the first."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    items = [item.strip() for item in first.split(",")]
    if len(items) > 1 and all(0 < len(item.split()) <= 2 for item in items):
        return items[0]
    return first


class _Silent:
    """A logger for the engine that keeps its messages (shown nowhere)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(str(message))


class PromptoptAdapter:
    """A ``gepa`` adapter over a :class:`SearchContext`.

    A candidate is a dict of ``components`` (the instruction, and the answer prefix
    when the task has one) over the starting template. Keeps the template and parents
    of every accepted candidate, so evaluations are recorded with their lineage.
    """

    def __init__(self, ctx: SearchContext, *, components: Sequence[str] = (COMPONENT,),
                 max_tokens: int = REFLECTION_MAX_TOKENS,
                 prompt_template: str | Mapping[str, str] | None = None,
                 temperature: float = 1.0, style: str = "answers",
                 second_chance: bool = False, reuse_scores: bool = False) -> None:
        self.ctx = ctx
        self.reuse_scores = reuse_scores
        self._scored: dict[tuple[tuple[str, ...], str], tuple[str, float]] = {}
        """(candidate, example id) -> (prediction, score), with ``reuse_scores``."""
        self.style = style
        self.second_chance = second_chance
        self._batch: Any = None  # the parent's minibatch evaluation last reflected on
        self.temperature = temperature
        self.components = tuple(components)
        self.max_tokens = max_tokens
        self.prompt_template = prompt_template
        self.templates: dict[tuple[str, ...], Template] = {}
        self.parents: dict[tuple[str, ...], list[str]] = {}
        self.seed_candidate = self.candidate(ctx.base)
        self._known(ctx.base, [])
        self.exhausted = False
        self.failure: Exception | None = None
        """An error of the proposer (e.g. an outage) that the engine would swallow; the
        search re-raises it once the engine stops, so the run ends interrupted, as
        with any other method, instead of going on to the final choice."""
        self.prompts: list[str] = []
        self.last_rejection: tuple[str, str] = ("", "")
        """The component last reflected on and why its answer was rejected ("" if not)."""
        self._last_records: Sequence[Mapping[str, Any]] | None = None

    def candidate(self, template: Template) -> dict[str, str]:
        """``template``'s components as the engine's candidate."""
        return {name: str(getattr(template, name)) for name in self.components}

    def _key(self, candidate: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(candidate[name] for name in self.components)

    def _known(self, template: Template, parents: list[str]) -> None:
        key = self._key(self.candidate(template))
        self.templates[key] = template
        self.parents[key] = parents

    def _template(self, candidate: Mapping[str, str]) -> Template:
        key = self._key(candidate)
        if key not in self.templates:  # a merge of known candidates
            self._known(self.ctx.base.replace(**{n: candidate[n] for n in self.components}),
                        [])
        return self.templates[key]

    def evaluate(self, batch: list[Example], candidate: dict[str, str],
                 capture_traces: bool = False) -> Any:
        """Run ``candidate`` on ``batch`` through promptopt's evaluator."""
        from gepa.core.adapter import EvaluationBatch

        template = self._template(candidate)
        key = self._key(candidate)
        known = self._scored if self.reuse_scores else {}
        todo = [ex for ex in batch if (key, ex.id) not in known]
        if self.reuse_scores:  # each once (the package's batches may repeat an example)
            todo = list({ex.id: ex for ex in todo}.values())
        failed, fresh = "", {}
        if todo:  # with reuse_scores, only the examples this candidate has not run on
            ev = self.ctx.evaluate(template, todo, parents=self.parents[key],
                                   meta={"kind": "gepa"})
            failed = ev.failed
            fresh = {ex.id: ("", 0.0) if ev.failed else (p, float(s))
                     for ex, p, s in zip(todo, ev.predictions or [""] * len(todo),
                                         ev.scores or [0.0] * len(todo), strict=True)}
            if self.reuse_scores and not ev.failed:
                known.update({(key, i): v for i, v in fresh.items()})
        got = [fresh[ex.id] if ex.id in fresh else known[(key, ex.id)] for ex in batch]
        predictions = [p for p, _ in got]
        scores = [s for _, s in got]
        traces = None
        if capture_traces:
            traces = [
                {"example": ex, "prediction": p, "score": s,
                 "failed": failed if ex.id in fresh else ""}
                for ex, p, s in zip(batch, predictions, scores, strict=True)
            ]
        return EvaluationBatch(outputs=predictions, scores=scores, trajectories=traces)

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """What each minibatch example shows the proposer. For the instruction, with
        ``style="answers"``: the correct answer, the output, its score (with the scorer's
        own explanation where it gives one) and the inputs; with ``"feedback"``: the
        inputs, the output and the task's feedback text. For the answer prefix: each
        output and the correct answer alone."""
        task = self.ctx.task
        explain = getattr(task.scorer, "feedback", None)

        def record(trace: Mapping[str, Any], component: str) -> dict[str, Any]:
            ex, prediction = trace["example"], trace["prediction"]
            if component == PREFIX:
                return {"Generated Outputs": prediction, "Correct answer": ex.target}
            failed = f"The model call failed: {trace['failed']}" if trace["failed"] else None
            inputs = task.format_example(ex, with_target=False)
            if self.style == "feedback":
                return {"Inputs": inputs, "Generated Outputs": prediction,
                        "Feedback": failed or task.feedback(prediction, ex, trace["score"])}
            shown: dict[str, Any] = {"Correct answer": ex.target,
                                     "Assistant's answer": prediction,
                                     "Score": f"{trace['score']:.2f}"}
            why = failed or (explain(prediction, ex.target) if callable(explain) else None)
            if why:
                shown["Feedback"] = str(why)
            shown["Inputs"] = inputs
            return shown

        self._batch = eval_batch
        traces = eval_batch.trajectories or []
        return {name: [record(t, name) for t in traces] for name in components_to_update}

    def _prompt_template(self, component: str) -> str:
        custom = self.prompt_template
        if isinstance(custom, Mapping):
            custom = custom.get(component)
        if custom is None:
            return PREFIX_PROMPT if component == PREFIX else INSTRUCTION_PROMPTS[self.style]
        return custom

    def reflection_prompt(self, text: str, records: Sequence[Mapping[str, Any]],
                          component: str = COMPONENT, *, open_block: bool = True) -> str:
        """The reflection prompt for ``component`` (whose current value is ``text``):
        :data:`INSTRUCTION_PROMPT` for the instruction, :data:`PREFIX_PROMPT` for the
        answer prefix, or the ``prompt_template`` given, filled in by the package's
        renderer. With ``open_block`` (a base-model proposer, which continues the text)
        it ends inside an opened ````` block; a chat model is asked for the block."""
        from gepa.strategies.instruction_proposal import InstructionProposalSignature

        prompt = InstructionProposalSignature.prompt_renderer({
            "current_instruction_doc": text,
            "dataset_with_feedback": list(records),
            "prompt_template": self._prompt_template(component),
        })
        brief = f"About the task: {self.ctx.task.brief}\n\n" if self.ctx.task.brief else ""
        prompt = str(prompt).replace("<task_brief>", brief)
        return f"{prompt}\n\n```\n" if open_block else prompt

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        """Ask the proposer for each component to update; ``{}`` (no child) when none of
        the answers is usable. With ``second_chance``, an iteration whose reflections were
        all rejected asks once more (see :meth:`_second_chance`) before giving up the
        minibatch evaluation it has paid for."""
        parent = self._template(candidate)
        child = parent
        for component in components_to_update:
            child = self._reflect(component, candidate[component],
                                  reflective_dataset[component], child)
        if (child is parent and self.second_chance and not self.exhausted
                and self.failure is None):
            child = self._second_chance(candidate, components_to_update, parent)
        if child is parent or self.exhausted or self.failure is not None:
            return {}
        self._known(child, [parent.id])
        return {name: value for name, value in self.candidate(child).items()
                if value != candidate[name]}

    def _second_chance(self, candidate: Mapping[str, str], tried: list[str],
                       parent: Template) -> Template:
        """One more request after every reflection of an iteration was rejected. An
        answer prefix reflected as the parent's own (its opening is already the one most
        correct answers begin with) gives its turn to the instruction, on the same
        minibatch; a rejected instruction is asked for again, told why its reply was not
        used. ``parent`` when that fails too (or nothing is left to ask)."""
        last, reason = self.last_rejection
        if last == PREFIX and reason == "echo of parent" and COMPONENT in self.components \
                and COMPONENT not in tried and self._batch is not None:
            records = self.make_reflective_dataset(dict(candidate), self._batch,
                                                   [COMPONENT])[COMPONENT]
            return self._reflect(COMPONENT, candidate[COMPONENT], records, parent)
        if last == COMPONENT and reason and self._last_records is not None:
            note = RETRY_NOTE.format(why=WHY_NOT_USED.get(reason.split(" (")[0],
                                                          "it could not be used"))
            return self._reflect(COMPONENT, candidate[COMPONENT], self._last_records,
                                 parent, note=note)
        return parent

    def _reflect(self, component: str, text: str, records: Sequence[Mapping[str, Any]],
                 base: Template, *, note: str = "") -> Template:
        """Ask the proposer for a new ``component`` (now ``text``) of ``base``; ``base``
        with it, or ``base`` itself when the answer is rejected (its reason, as counted
        by the context, is kept in :attr:`last_rejection`)."""
        chat = self.ctx.proposer.is_chat  # a chat model answers; a base model continues
        prompt = self.reflection_prompt(text, records, component, open_block=False)
        if note:
            prompt = f"{prompt}\n\n{note}"
        if not chat:
            prompt = f"{prompt}\n\n```\n"
        self.prompts.append(prompt)
        self.last_rejection = (component, "")
        if not self.ctx.can_afford(1):
            self.exhausted = True
            return base
        try:
            # a chat model opens its block with ``` first: no stop sequence for it
            raw = self.ctx.propose(prompt, n=1, max_tokens=self.max_tokens,
                                   temperature=self.temperature,
                                   stop=None if chat else ["```"])[0]
        except BudgetExhausted:
            self.exhausted = True
            return base
        except PromptoptError as exc:
            self.failure = exc
            return base
        answer, closed = read_fenced(raw, opened=not chat)
        cut = not closed and looks_truncated(raw, self.max_tokens)
        frame = self._prompt_template(component).replace("<task_brief>", "")
        before = Counter(self.ctx.rejected)
        if component == PREFIX:
            changed = self.ctx.accept_prefix(first_prefix(answer), base, truncated=cut,
                                             frame=frame)
        else:
            changed = self.ctx.accept(answer, base, truncated=cut, frame=frame)
            self._last_records = records
        if changed is None:
            self.last_rejection = (component, next(iter(Counter(self.ctx.rejected) - before), ""))
            return base
        return changed


@optimizers.register("gepa")
class GEPA(Optimizer):
    """GEPA (Agrawal et al. 2025) through the ``gepa`` package's engine.

    Settings named as in :func:`gepa.optimize`, with its defaults (a test compares them).

    Args:
        pareto_size: Train examples in GEPA's Pareto (validation) set.
        candidate_selection_strategy: ``"pareto"``, ``"current_best"``,
            ``"epsilon_greedy"`` or ``"top_k_pareto"``.
        frontier_type: The package's Pareto frontier kind (``"instance"``, ...).
        reflection_minibatch_size: Train examples shown per reflection.
        skip_perfect_score: Do not reflect on a minibatch the parent already aces.
        perfect_score: The score counted as perfect.
        use_merge: Try merging two descendants of a common ancestor.
        max_merge_invocations: Merges at most.
        merge_val_overlap_floor: Pareto-set examples two merge parents must share.
        acceptance_criterion: ``"strict_improvement"`` or ``"improvement_or_equal"``.
        max_metric_calls: The package's own stop, in example evaluations (None: the
            budget alone ends the run).
        max_tokens: Proposer tokens per reflection answer.
        reflection_prompt_template: The reflection prompt, with ``<curr_param>`` (the
            parent's instruction) and ``<side_info>`` (the minibatch's inputs, outputs
            and feedback) where the package puts them; one text for every component, or
            a dict by component (None, or a component left out: :data:`INSTRUCTION_PROMPT`
            for the instruction, :data:`PREFIX_PROMPT` for the answer prefix).
        components: The template's parts GEPA evolves: ``"instruction"`` and
            ``"answer_prefix"`` (None: both where the task offers answer prefixes,
            the instruction alone otherwise).
        module_selector: Which components one reflection updates: ``"round_robin"``
            (one, in turn) or ``"all"``.
        temperature: The reflection LM's sampling temperature (a 1.5B proposer's
            answers to the prefix question were lists of words at 1.0, fewer at 0.7).
        opening: Build proposals on the start opened with the word most training
            answers begin with, where the task offers answer prefixes and the start has
            none (:meth:`SearchContext.open_answers`).
        reflection_style: What an instruction reflection shows and asks: ``"answers"``
            (the correct answers first, asked what a correct answer looks like, quoting
            one: :data:`ANSWERS_PROMPT`) or ``"feedback"`` (the inputs, outputs and the
            task's feedback text, asked for a better instruction: :data:`FEEDBACK_PROMPT`).
        second_chance: When every reflection of an iteration is rejected, ask once more
            (one proposer call, against the minibatch evaluation already paid): an
            answer prefix reflected as the parent's own gives its turn to the
            instruction; a rejected instruction is asked for again, told why
            (:data:`RETRY_NOTE`).
        reflect_on: Where the reflection minibatches come from: ``"pareto"`` (the
            Pareto set itself, as the package does when given no separate validation
            set: every candidate on the front has run on those examples already) or
            ``"rest"`` (the train examples outside it).
        reuse_scores: A candidate's output and score on an example it has run on are
            reused, not bought again (a parent's minibatch, the part of a child's
            Pareto-set evaluation its minibatch covered).
    """

    legacy_settings = {"temperature": 1.0, "opening": False, "reflection_style": "feedback"}

    def __init__(
        self,
        *,
        pareto_size: int = 8,
        candidate_selection_strategy: str = "pareto",
        frontier_type: str = "instance",
        reflection_minibatch_size: int = 3,
        skip_perfect_score: bool = True,
        perfect_score: float = 1.0,
        use_merge: bool = False,
        max_merge_invocations: int = 5,
        merge_val_overlap_floor: int = 5,
        acceptance_criterion: str = "strict_improvement",
        max_metric_calls: int | None = None,
        max_tokens: int = REFLECTION_MAX_TOKENS,
        reflection_prompt_template: str | dict[str, str] | None = None,
        components: list[str] | None = None,
        module_selector: str = "round_robin",
        temperature: float = 0.7,
        opening: bool = True,
        reflection_style: str = "answers",
        second_chance: bool = False,
        reflect_on: str = "rest",
        reuse_scores: bool = False,
    ) -> None:
        self.pareto_size = pareto_size
        self.candidate_selection_strategy = candidate_selection_strategy
        self.frontier_type = frontier_type
        self.reflection_minibatch_size = reflection_minibatch_size
        self.skip_perfect_score = skip_perfect_score
        self.perfect_score = perfect_score
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.merge_val_overlap_floor = merge_val_overlap_floor
        self.acceptance_criterion = acceptance_criterion
        self.max_metric_calls = max_metric_calls
        self.max_tokens = max_tokens
        self.reflection_prompt_template = reflection_prompt_template
        self.components = components
        self.module_selector = module_selector
        self.temperature = temperature
        self.opening = opening
        self.reflection_style = reflection_style
        self.second_chance = second_chance
        self.reflect_on = reflect_on
        self.reuse_scores = reuse_scores

    def validate(self) -> None:
        """Check the settings."""
        for name in ("pareto_size", "reflection_minibatch_size", "max_tokens"):
            self._check(getattr(self, name) >= 1, name, "must be at least 1")
        self._check(self.max_merge_invocations >= 0, "max_merge_invocations", "must be >= 0")
        self._check(self.merge_val_overlap_floor >= 0, "merge_val_overlap_floor", "must be >= 0")
        self._check(self.max_metric_calls is None or self.max_metric_calls >= 1,
                    "max_metric_calls", "must be at least 1 or None")
        self._check(
            self.candidate_selection_strategy
            in ("pareto", "current_best", "epsilon_greedy", "top_k_pareto"),
            "candidate_selection_strategy",
            "must be pareto, current_best, epsilon_greedy or top_k_pareto",
        )
        self._check(self.acceptance_criterion in ("strict_improvement", "improvement_or_equal"),
                    "acceptance_criterion", "must be strict_improvement or improvement_or_equal")
        self._check(self.frontier_type in ("instance", "objective", "hybrid", "cartesian"),
                    "frontier_type", "must be instance, objective, hybrid or cartesian")
        given = self.reflection_prompt_template
        templates: list[Any] = []
        if isinstance(given, dict):
            self._check(set(given) <= set(COMPONENTS), "reflection_prompt_template",
                        f"keys must be among {', '.join(COMPONENTS)}")
            templates = list(given.values())
        elif given is not None:
            templates = [given]
        self._check(all(isinstance(t, str) and "<curr_param>" in t and "<side_info>" in t
                        for t in templates),
                    "reflection_prompt_template",
                    "must be text holding <curr_param> and <side_info> (or a dict of such)")
        components = self.components
        self._check(components is None or (
            isinstance(components, (list, tuple)) and len(components) > 0
            and len(set(components)) == len(components) and set(components) <= set(COMPONENTS)),
            "components", f"must be a list of distinct names among {', '.join(COMPONENTS)}")
        self._check(self.module_selector in ("round_robin", "all"), "module_selector",
                    "must be round_robin or all")
        self._check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        self._check(self.reflection_style in STYLES, "reflection_style",
                    "must be answers or feedback")
        self._check(self.reflect_on in ("pareto", "rest"), "reflect_on", "must be pareto or rest")

    def evolved(self, ctx: SearchContext) -> list[str]:
        """The components this run evolves (see ``components``)."""
        if self.components is not None:
            return list(self.components)
        offers_prefix = any(p.strip() for p in getattr(ctx.task, "answer_prefixes", ("",)))
        return list(COMPONENTS) if offers_prefix else [COMPONENT]

    def split(self, ctx: SearchContext) -> tuple[list[Example], list[Example]]:
        """The Pareto set and the reflection set, both from the train split (seeded)."""
        train = list(ctx.train)
        if not train:
            raise ConfigError("gepa needs train examples")
        random.Random(ctx.seed).shuffle(train)
        pareto = train[: self.pareto_size]
        rest = train[self.pareto_size:]
        if self.reflect_on == "pareto":
            return pareto, list(pareto)
        feedback = rest if len(rest) >= self.reflection_minibatch_size else list(ctx.train)
        return pareto, feedback

    def search(self, ctx: SearchContext) -> None:
        """Run the package's engine; the budget or its stop conditions end it."""
        import gepa

        pareto, feedback = self.split(ctx)
        adapter = PromptoptAdapter(ctx, components=self.evolved(ctx), max_tokens=self.max_tokens,
                                   prompt_template=self.reflection_prompt_template,
                                   temperature=self.temperature,
                                   style=self.reflection_style,
                                   second_chance=self.second_chance,
                                   reuse_scores=self.reuse_scores)
        self.adapter_ = adapter
        # parent and child on a minibatch, the proposal, the child on the Pareto set: an
        # iteration the budget cannot finish would end the engine without its result.
        # Reflecting on the Pareto set with scores reused, the parent's minibatch is known
        # and the child's minibatch is part of its Pareto-set evaluation.
        free = self.reflect_on == "pareto" and self.reuse_scores
        need = 1 + len(pareto) + (0 if free else 2 * self.reflection_minibatch_size)

        def out_of_budget(state: Any) -> bool:
            return adapter.exhausted or adapter.failure is not None or not ctx.can_afford(need)

        stoppers: list[Any] = [out_of_budget]
        self.logger_ = _Silent()
        settings: dict[str, Any] = {
            name: getattr(self, name) for name in (
                "candidate_selection_strategy", "frontier_type", "skip_perfect_score",
                "reflection_minibatch_size", "perfect_score", "use_merge",
                "max_merge_invocations", "merge_val_overlap_floor", "acceptance_criterion",
                "max_metric_calls", "module_selector")
        }
        result: Any = gepa.optimize(
            seed_candidate=adapter.seed_candidate,
            trainset=feedback,
            valset=pareto,
            adapter=cast(Any, adapter),
            stop_callbacks=stoppers,
            logger=self.logger_,
            seed=ctx.seed,
            raise_on_exception=True,
            **settings,
        )
        self.result_ = result
        if adapter.failure is not None:
            raise adapter.failure
        if adapter.exhausted or not ctx.can_afford(need):
            raise BudgetExhausted("gepa: the budget cannot pay for another iteration")

    def pareto_front(self) -> list[dict[str, str]]:
        """Candidates (component -> text) best on at least one Pareto-set example in
        the last run."""
        result = self.result_
        front: set[int] = set()
        for best in result.per_val_instance_best_candidates.values():
            front |= set(best)
        return [dict(result.candidates[i]) for i in sorted(front)]
