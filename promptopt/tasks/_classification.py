"""Labelled classification, predicted from the model's next-token label probabilities.

The template is rendered so that the prompt ends right where the label comes
(``"...\\nAnswer: "``); the LLM is asked for the log-probability of each label's first
token there (:meth:`LLM.label_logprobs <promptopt.llm.LLM.label_logprobs>`: exact
with the embedded llama.cpp models, from the top log-probs with LiteLLM providers),
and the prediction is the softmax over the labels (nothing is sampled).

A prediction is written as the most probable label followed by every label's
probability as JSON, e.g. ``B {"A": 0.21, "B": 0.7, "tie": 0.09}``: readable in the
dashboard and meta-prompts, and complete enough to be scored from the string alone.

The per-example score the optimizers maximise is the probability given to the true
label: bounded in [0, 1] like every other task's score (OPRO shows it on 0-100,
EvoPrompt's roulette wheel needs non-negative weights, the bandits' exploration
constants assume that range), and one confidently wrong example cannot dominate a
minibatch mean the way its unbounded log loss would. Log loss and accuracy are
reported with every evaluation (:meth:`ClassificationTask.metrics`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from promptopt.data import (
    SAMPLE_PREFERENCE,
    DataWarning,
    Example,
    Splits,
    load_examples,
    read_rows,
    split_examples,
)
from promptopt.errors import ConfigError, DataError
from promptopt.registry import tasks
from promptopt.tasks._base import Messages, Task, truncate_tokens
from promptopt.template import Template

if TYPE_CHECKING:
    from promptopt.llm import LLM

ANSWER_CUE = "Answer:"
PROB_CLIP = 1e-15
"""Probabilities are clipped to [PROB_CLIP, 1] in the log loss (as scikit-learn and Kaggle do)."""
PREFERENCE_FIELDS = ("prompt", "response_a", "response_b")
PREFERENCE_LABELS = ("A", "B", "tie")
PREFERENCE_INSTRUCTIONS = (
    "Which response answers the prompt better? Answer A if Response A is better, B if "
    "Response B is better, or tie if both are equally good.",
    "Compare the two responses for correctness, helpfulness and clarity. Reply with A, B "
    "or tie.",
    "You are judging two answers to the same question. Say A if the first is better, B "
    "if the second is better, and tie if neither is better.",
    "Read the prompt, then both responses. The better response is the one that is "
    "accurate and actually does what was asked. Answer A, B or tie.",
)


def softmax(logprobs: Sequence[float]) -> np.ndarray:
    """Normalize log-probabilities (or any logits) into probabilities that sum to 1."""
    values = np.asarray(logprobs, dtype=np.float64)
    exp = np.exp(values - values.max())
    return exp / exp.sum()


def log_loss(probs: np.ndarray, truth: Sequence[int]) -> float:
    """Mean negative log of the probability given to the true class (clipped at PROB_CLIP).

    Args:
        probs: ``(n, k)`` probabilities, one row per example.
        truth: The true class index per example.
    """
    true = np.asarray(probs, dtype=np.float64)[np.arange(len(truth)), list(truth)]
    return float(-np.mean(np.log(np.clip(true, PROB_CLIP, 1.0))))


def accuracy(probs: np.ndarray, truth: Sequence[int]) -> float:
    """Share of examples whose most probable class (the first, on ties) is the true one."""
    return float(np.mean(np.argmax(np.asarray(probs), axis=1) == np.asarray(truth)))


def format_prediction(labels: Sequence[str], probs: Sequence[float] | np.ndarray) -> str:
    """``'<most probable label> {"label": p, ...}'`` (6 significant digits)."""
    best = labels[int(np.argmax(probs))]
    return f"{best} " + json.dumps(
        {label: float(f"{p:.6g}") for label, p in zip(labels, probs, strict=True)},
        ensure_ascii=False,
    )


def parse_prediction(text: str, labels: Sequence[str]) -> np.ndarray | None:
    """The label probabilities a :func:`format_prediction` string holds.

    A bare label counts as certainty in it; anything else gives None.
    """
    text = (text or "").strip()
    for label in sorted(labels, key=len, reverse=True):
        if text.startswith(label + " {"):
            try:
                data = json.loads(text[len(label) + 1 :])
                return np.array([float(data[lb]) for lb in labels])
            except (ValueError, KeyError, TypeError):
                return None
    if text in labels:
        return np.array([float(lb == text) for lb in labels])
    return None


class LabelProbability:
    """The classification "scorer": the probability a prediction gives to the true label."""

    name = "label-probability"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def probabilities(self, predictions: Sequence[str]) -> np.ndarray:
        """``(n, k)`` label probabilities; an unreadable prediction gives all zeros."""
        zeros = np.zeros(len(self.labels))
        rows = [parse_prediction(p, self.labels) for p in predictions]
        return np.array([zeros if r is None else r for r in rows]).reshape(-1, len(self.labels))

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Per-example probability of the true label (0 for a target that is no label)."""
        probs = self.probabilities(predictions)
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([probs[n, index[t.strip()]] if t.strip() in index else 0.0
                         for n, t in enumerate(targets)])


def _title(field: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in field.split("_"))


@tasks.register("classification")
class ClassificationTask(Task):
    """Choose one of a set of labels; scored from the model's first-token label probabilities.

    Args:
        splits: Train/validation/test examples; targets must be labels.
        scorer: Ignored (the score is the probability of the true label).
        labels: The label texts (default: the distinct targets of all splits, sorted).
            No label may be a prefix of another: their first tokens would coincide.
        input_fields: The input columns (default: those of the bundled preference sample).
        target_field: The label column.
        answer_cue: The text right before the label (the prompt ends with it and a space).
        max_text_tokens: Each input text is cut to about this many tokens.
    """

    input_fields: tuple[str, ...] = PREFERENCE_FIELDS
    target_field: str = "label"
    sample: ClassVar[str] = SAMPLE_PREFERENCE
    free_text_answers: ClassVar[bool] = False
    default_instruction: str = PREFERENCE_INSTRUCTIONS[0]
    generation: dict[str, Any] = {"max_tokens": 4}
    description: str = (
        "labelled classification (e.g. which response is better: A, B or tie) from the LLM's "
        "next-token label probabilities; log loss and accuracy"
    )

    def __init__(
        self,
        splits: Splits,
        *,
        scorer: Any = None,
        labels: Sequence[str] | None = None,
        input_fields: Sequence[str] | None = None,
        target_field: str | None = None,
        answer_cue: str = ANSWER_CUE,
        max_text_tokens: int = 200,
    ) -> None:
        if input_fields is not None:
            self.input_fields = tuple(input_fields)
        if target_field is not None:
            self.target_field = target_field
        targets = sorted({e.target.strip() for name in ("train", "val", "test")
                          for e in splits[name]})
        self.labels = [str(label).strip() for label in (labels if labels is not None else targets)]
        self._check_labels()
        unknown = sorted(set(targets) - set(self.labels))
        if unknown:
            raise ConfigError(f"classification: targets {unknown} are not among the labels "
                              f"{self.labels}")
        super().__init__(splits, scorer=LabelProbability(self.labels))
        self.answer_cue = answer_cue
        self.max_text_tokens = max_text_tokens

    def _check_labels(self) -> None:
        labels = self.labels
        if len(labels) < 2:
            raise ConfigError(f"classification needs at least two labels, got {labels}; give "
                              "labels=[...] or data whose target column holds two or more values")
        if "" in labels or len(set(labels)) != len(labels):
            raise ConfigError(f"classification labels must be distinct and non-empty: {labels}")
        for a in labels:
            for b in labels:
                if a != b and b.startswith(a):
                    raise ConfigError(
                        f"classification labels {a!r} and {b!r}: one is a prefix of the other, so "
                        "their first tokens are the same; use labels whose first tokens differ"
                    )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        scorer: Any,
        train: int | float = 0.5,
        val: int | float = 0.25,
        test: int | float | None = None,
        seed: int = 0,
        skip_bad_rows: bool = False,
        labels: Sequence[str] | None = None,
        input_fields: Sequence[str] | None = None,
        target_field: str | None = None,
        **options: Any,
    ) -> Task:
        """Load a labelled file; by default every column but ``id`` and the target is an input.

        Raises:
            DataError: naming the file, row and field of a missing column, an empty cell,
                or a target that is not one of ``labels``.
        """
        target = target_field or cls.target_field
        rows = read_rows(path)
        columns = list(dict.fromkeys(str(k) for row in rows for k in row))
        fields = tuple(input_fields) if input_fields else tuple(
            c for c in columns if c not in (target, "id"))
        if not fields:
            raise DataError(f"no input columns besides 'id' and the target {target!r}",
                            path=str(path))
        examples = load_examples(path, input_fields=fields, target_field=target,
                                 skip_bad_rows=skip_bad_rows)
        if labels is not None:
            examples = cls._known_labels(path, rows, examples, target, labels, skip_bad_rows)
        else:  # from the whole file, not only the rows the splits keep
            labels = sorted({e.target.strip() for e in examples})
        splits = split_examples(examples, train=train, val=val, test=test, seed=seed)
        return cls(splits, scorer=scorer, labels=labels, input_fields=fields, target_field=target,
                   **options)

    @staticmethod
    def _known_labels(
        path: str | Path,
        rows: list[dict[str, Any]],
        examples: list[Example],
        target: str,
        labels: Sequence[str],
        skip_bad_rows: bool,
    ) -> list[Example]:
        """``examples`` whose target is a label; others raise (or are skipped, with a warning)."""
        has_id = any("id" in row for row in rows)
        row_of = {(str(r.get("id", "")).strip() if has_id else str(i)): i
                  for i, r in enumerate(rows, start=1)}
        allowed = {str(label).strip() for label in labels}
        bad = [e for e in examples if e.target.strip() not in allowed]
        errors = [DataError(f"{e.target.strip()!r} is not one of the labels {list(labels)}",
                            path=str(path), row=row_of.get(e.id), field=target) for e in bad]
        if errors and not skip_bad_rows:
            raise errors[0]
        if errors:
            warnings.warn(f"file {path}: skipped {len(errors)} row(s) whose label is unknown: "
                          + "; ".join(f"row {e.row}" for e in errors[:5]), DataWarning,
                          stacklevel=3)
        return [e for e in examples if e.target.strip() in allowed]

    # --- rendering -----------------------------------------------------------------

    @property
    def label_list(self) -> str:
        """The labels as prose: ``"A, B or tie"``."""
        return ", ".join(self.labels[:-1]) + f" or {self.labels[-1]}"

    def start_template(self) -> Template:
        """The preference instruction on the preference layout, else a generic one."""
        if self.input_fields == PREFERENCE_FIELDS and tuple(self.labels) == PREFERENCE_LABELS:
            return Template(instruction=self.default_instruction)
        return Template(instruction=f"Classify the example. Answer with one label: "
                                    f"{self.label_list}.")

    def _inputs(self, fields: dict[str, str]) -> dict[str, str]:
        return {k: truncate_tokens(fields[k], self.max_text_tokens) for k in self.input_fields}

    def _block(self, values: dict[str, str]) -> str:
        return "\n".join(f"{_title(k)}: {values[k]}" for k in self.input_fields)

    def _cue(self, template: Template) -> str:
        return f"{self.answer_cue} {template.answer_prefix}".rstrip()

    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """Instruction, demos, then the inputs; the prompt ends with the cue and a space."""
        values = self._inputs(example.inputs)
        instruction = self.fill(template.instruction, values).strip()
        inline = any("{" + f + "}" in template.instruction for f in self.input_fields)
        cue = self._cue(template)
        query = f"{cue} " if inline else f"{self._block(values)}\n{cue} "
        demos = [(self._block(self._inputs(dict(d))),
                  self.answer_text(dict(d).get(self.target_field, ""))) for d in template.demos]
        if not chat:
            parts = [instruction, *(f"{block}\n{cue} {label}" for block, label in demos), query]
            return [{"role": "user", "content": "\n\n".join(parts)}]
        messages = [{"role": "system", "content": instruction}]
        for block, label in demos:
            messages.append({"role": "user", "content": f"{block}\n{cue}"})
            messages.append({"role": "assistant", "content": label})
        messages.append({"role": "user", "content": query})
        return messages

    def parse(self, raw: str, template: Template) -> str:
        """A generated answer as a prediction: sure of the label it starts with, else uniform."""
        words = (raw or "").strip().split()
        first = words[0].strip(".,:;!\"'*()") if words else ""
        match = [lb for lb in self.labels if lb.lower() == first.lower()]
        probs = [float(lb == match[0]) for lb in self.labels] if match else [
            1.0 / len(self.labels)] * len(self.labels)
        return format_prediction(self.labels, probs)

    def answer_text(self, prediction: str) -> str:
        """The label a prediction (or a bare label) stands for."""
        probs = parse_prediction(prediction, self.labels)
        return self.labels[int(np.argmax(probs))] if probs is not None else prediction.strip()

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """Truncated inputs and (optionally) the true label, for meta-prompts."""
        values = {k: truncate_tokens(example.inputs[k], 80) for k in self.input_fields}
        text = self._block(values)
        return f"{text}\n{self.answer_cue} {example.target.strip()}" if with_target else text

    def feedback(self, prediction: str, example: Example, score: float) -> str:
        """The label probabilities against the true label (for reflective methods)."""
        probs = parse_prediction(prediction, self.labels)
        truth = example.target.strip()
        if probs is None:
            return f"The answer could not be read as a label. The true label is {truth}."
        shown = ", ".join(f"{lb} {p:.2f}" for lb, p in zip(self.labels, probs, strict=True))
        best = self.labels[int(np.argmax(probs))]
        verdict = "right" if best == truth else f"wrong (it favoured {best})"
        return (f"Label probabilities: {shown}. True label: {truth} (probability "
                f"{score:.2f}); the prediction is {verdict}.")

    # --- querying and scoring ------------------------------------------------------

    def predict(
        self, llm: LLM, template: Template, examples: Sequence[Example], *, charge: bool = True
    ) -> list[str]:
        """Softmax over the labels' first-token log-probs after each prompt (one request each)."""
        chat = llm.is_chat
        rows = llm.label_logprobs([self.render(template, e, chat=chat) for e in examples],
                                  self.labels, charge=charge)
        return [format_prediction(self.labels, softmax([row[lb] for lb in self.labels]))
                for row in rows]

    def metrics(self, predictions: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
        """``log_loss`` and ``accuracy`` of the predictions (none for no examples)."""
        if not examples:
            return {}
        index = {label: i for i, label in enumerate(self.labels)}
        probs = LabelProbability(self.labels).probabilities(predictions)
        truth = [index[e.target.strip()] for e in examples]
        return {"log_loss": log_loss(probs, truth), "accuracy": accuracy(probs, truth)}

    @property
    def instruction_pool(self) -> tuple[str, ...]:  # type: ignore[override]
        """Hand-written instructions naming this task's labels (``random``, ``tpe``)."""
        generic = (
            f"Classify the example. Answer with one label: {self.label_list}.",
            f"Read the example carefully and reply with exactly one of {self.label_list}, "
            "nothing else.",
            f"Decide which label fits the example best ({self.label_list}) and answer with "
            "that label only.",
            f"You are a careful annotator. Give the correct label for the example: "
            f"{self.label_list}.",
        )
        if self.input_fields == PREFERENCE_FIELDS and tuple(self.labels) == PREFERENCE_LABELS:
            return PREFERENCE_INSTRUCTIONS + generic
        return generic

    answer_prefixes = ("",)  # no answer prefix: the label comes right after the cue
