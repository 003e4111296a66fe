"""Structured template search with Optuna's Tree-structured Parzen Estimator (TPE).

Source: Bergstra et al., "Algorithms for Hyper-Parameter Optimization" (NeurIPS 2011),
as implemented by Optuna's ``TPESampler`` (multivariate, Falkner et al. 2018). A
template is assembled from parts, each a categorical or integer parameter: the
instruction (the starting one, the task's ``instruction_pool``, and lines of a user file),
the number and choice of few-shot demos from the train split, and an answer prefix;
a fixed suffix is a setting. Each Optuna trial is one evaluation on a fixed train
minibatch; demos are drawn only from train examples outside that minibatch whose
true answer differs from every minibatch answer (no leaked answers; a task with a fixed
label set has nothing to leak). Left out:
conditional (tree-structured) search spaces — every demo slot is always sampled and
only the first ``n_demos`` distinct ones are used, so the space stays static for the
multivariate sampler — and any LLM-written instructions.

The Optuna study is in memory and private to the search; the run's storage is
written only by the evaluator, one trial per new template.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from promptopt.errors import DataError
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import MAX_INSTRUCTION_CHARS, SearchContext
from promptopt.tasks import (
    ANSWER_PREFIXES,  # noqa: F401 (re-exported)
    Task,
)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def read_instructions(path: str | Path, task: Task | None = None) -> list[str]:
    """Instructions from a text file, one per line (blank lines and ``#`` lines skipped).

    Raises:
        DataError: naming the file (and line) when it is missing, not UTF-8, empty,
            or a line is too long or unusable for ``task`` (e.g. bad placeholders).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("instructions file not found", path=source) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", path=source) from None
    except OSError as exc:
        raise DataError(f"cannot read instructions file: {exc.strerror}", path=source) from None
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_INSTRUCTION_CHARS:
            raise DataError(
                f"line {lineno}: instruction has {len(line)} characters "
                f"(at most {MAX_INSTRUCTION_CHARS})",
                path=source,
            )
        problem = task.validate_instruction(line) if task is not None else None
        if problem:
            raise DataError(f"line {lineno}: unusable instruction: {problem}", path=source)
        out.append(line)
    if not out:
        raise DataError("no instructions in file (one per line expected)", path=source)
    return out


@optimizers.register("tpe")
class TPESearch(Optimizer):
    """Sample template parts with Optuna's TPE and score each on a fixed minibatch.

    The starting template is evaluated first, as the baseline; every candidate takes
    the start's other fields and replaces its instruction, demos and answer prefix.
    Trial 0 is enqueued as the start's instruction with no demos and its own prefix.

    Args:
        minibatch_size: Train examples every candidate is scored on (the same ones).
        max_demos: Most few-shot demos in a template (0: instruction-only search).
        demo_pool_size: Train examples (outside the minibatch) that demos are drawn from.
        n_trials: Most Optuna trials, duplicates included (the budget may end it first).
        instructions_file: Text file with extra instructions, one per line.
        answer_prefixes: Answer prefixes to choose from (default: the task's ``answer_prefixes``).
        suffix: Fixed string appended to every prediction of every candidate ("": keep
            the starting template's suffix).
        n_startup_trials: Random trials before TPE starts modelling.
    """

    def __init__(
        self,
        *,
        minibatch_size: int = 8,
        max_demos: int = 2,
        demo_pool_size: int = 16,
        n_trials: int = 100,
        instructions_file: str | None = None,
        answer_prefixes: list[str] | None = None,
        suffix: str = "",
        n_startup_trials: int = 8,
    ) -> None:
        self.minibatch_size = minibatch_size
        self.max_demos = max_demos
        self.demo_pool_size = demo_pool_size
        self.n_trials = n_trials
        self.instructions_file = instructions_file
        self.answer_prefixes = answer_prefixes
        self.suffix = suffix
        self.n_startup_trials = n_startup_trials

    def validate(self) -> None:
        """Check the numbers and types, and read the instructions file if given."""
        self._check(self.minibatch_size >= 1, "minibatch_size", "must be at least 1")
        self._check(self.max_demos >= 0, "max_demos", "must be 0 or more")
        self._check(self.demo_pool_size >= 1, "demo_pool_size", "must be at least 1")
        self._check(self.n_trials >= 1, "n_trials", "must be at least 1")
        self._check(self.n_startup_trials >= 0, "n_startup_trials", "must be 0 or more")
        self._check(isinstance(self.suffix, str), "suffix", "must be a string")
        self._check(
            self.answer_prefixes is None
            or (
                isinstance(self.answer_prefixes, (list, tuple))
                and len(self.answer_prefixes) > 0
                and all(isinstance(p, str) for p in self.answer_prefixes)
            ),
            "answer_prefixes",
            "must be a non-empty list of strings",
        )
        self._check(
            self.instructions_file is None or isinstance(self.instructions_file, str),
            "instructions_file",
            "must be a file path",
        )
        if self.instructions_file:
            read_instructions(self.instructions_file)

    def _instruction_pool(self, ctx: SearchContext) -> list[tuple[str, str]]:
        """(instruction, source) pairs: start first, then built-ins, then the file."""
        builtin = ctx.task.instruction_pool
        pool = [(ctx.start.instruction, "start")] + [(t, "builtin") for t in builtin]
        if self.instructions_file:
            pool += [(t, "file") for t in read_instructions(self.instructions_file, ctx.task)]
        seen: set[str] = set()
        out = []
        for text, source in pool:
            key = _norm(text)
            if key not in seen and ctx.task.validate_instruction(text) is None:
                seen.add(key)
                out.append((text, source))
        return out

    def search(self, ctx: SearchContext) -> None:
        """Ask TPE for parts, evaluate the assembled template, tell TPE its score."""
        import optuna
        from optuna.distributions import distribution_to_json

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        instructions = self._instruction_pool(ctx)
        prefixes = list(dict.fromkeys([ctx.start.answer_prefix, *(
            self.answer_prefixes if self.answer_prefixes is not None
            else ctx.task.answer_prefixes)]))
        train = ctx.train
        size = self.minibatch_size
        if self.max_demos > 0 and len(train) > self.max_demos:
            size = min(size, len(train) - self.max_demos)  # leave examples to draw demos from
        batch = ctx.minibatch(size)
        in_batch = {e.id for e in batch}
        # A demo with a scored example's free-text answer leaks it; a label set cannot.
        answers = {_norm(e.target) for e in batch} if ctx.task.free_text_answers else set()
        outside = [e for e in train if e.id not in in_batch and _norm(e.target) not in answers]
        demo_pool = (
            outside if len(outside) <= self.demo_pool_size
            else ctx.rng.sample(outside, self.demo_pool_size)
        )
        max_demos = min(self.max_demos, len(demo_pool))
        target_field = ctx.task.target_field
        suffix = self.suffix or ctx.start.suffix

        ctx.evaluate(ctx.start, batch, meta={"kind": "tpe", "role": "start"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=ctx.seed, multivariate=True, n_startup_trials=self.n_startup_trials
            )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.enqueue_trial({"instruction": 0, "n_demos": 0, "answer_prefix": 0})
        scores: dict[str, float] = {}
        for number in range(self.n_trials):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask()
                i = trial.suggest_categorical("instruction", list(range(len(instructions))))
                n_demos = trial.suggest_int("n_demos", 0, max_demos)
                slots = [
                    trial.suggest_categorical(f"demo_{k}", list(range(len(demo_pool))))
                    for k in range(max_demos)
                ]
                p = trial.suggest_categorical("answer_prefix", list(range(len(prefixes))))
            chosen = list(dict.fromkeys(slots[:n_demos]))
            demos = [demo_pool[k] for k in chosen]
            template = ctx.start.replace(
                instruction=instructions[i][0], answer_prefix=prefixes[p], suffix=suffix
            ).with_demos([e.as_fields(target_field) for e in demos])
            if template.id in scores:  # the evaluator would serve it from memory anyway
                study.tell(trial, scores[template.id])
                continue
            meta: dict[str, Any] = {
                "kind": "tpe",
                "trial": number,
                "step": number,
                "instruction_index": i,
                "instruction_source": instructions[i][1],
                "n_demos": len(demos),
                "demo_ids": [e.id for e in demos],
                "answer_prefix": prefixes[p],
                "suffix": suffix,
                # TPE's own parts, recorded as the trial's parameters (see promptopt.tracking)
                "params": {f"tpe_{k}": v for k, v in trial.params.items()},
                "distributions": {f"tpe_{k}": distribution_to_json(d)
                                  for k, d in trial.distributions.items()},
            }
            try:
                ev = ctx.evaluate(template, batch, parents=[ctx.start.id], meta=meta)
            except BaseException:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            if ev.failed:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            scores[template.id] = ev.score
            study.tell(trial, ev.score)
