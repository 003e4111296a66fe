"""Mean prompt: a fixed string built to maximise the metric against known prompts.

Source: the winning solutions of the Kaggle "LLM Prompt Recovery" competition (2024),
whose "mean prompt" attack on the sharpened-cosine metric greedily appends, one at a
time, the token of the embedding model's vocabulary that most raises the mean SCS
against a set of known rewrite prompts; the final submission was "LLM prediction +
mean prompt". Left out: the winners' GPU-scale exhaustive search over the full
vocabulary at every step (here only the first step is exhaustive, later steps try
the ``pool_size`` best first-step entries), their hand-tuned word lists and ensembles
of several mean prompts, and any optimisation of the string jointly with the LLM's
predictions (it is learned standalone, then appended).

:func:`search_mean_prompt` is a pure function of a scorer and a list of target
texts; :class:`MeanPrompt` wraps it as an optimizer that makes no LLM call during
its search and records each accepted string through
:meth:`~promptopt.evaluator.Evaluator.score_constant`.
"""

from __future__ import annotations

import copy
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation
from promptopt.optimizers._base import Optimizer, OptimizeResult
from promptopt.registry import optimizers
from promptopt.scoring import is_embedding_metric
from promptopt.search import SearchContext, Selection
from promptopt.tasks import Task

_WORD = re.compile(r"[A-Za-z]+")
_SPECIAL = re.compile(r"^(\[.*\]|<.*>)$")
_CHUNK = 2048  # candidate strings embedded and scored per batch


@dataclass(frozen=True)
class MeanPromptStep:
    """One accepted step of the search.

    Attributes:
        step: 1-based step number (= tokens in ``text`` for greedy search).
        added: The pool entry appended at this step (not called "token": the tracker
            scrubs keys that look like secrets).
        text: The accepted string.
        train, val, test: Its mean SCS against each split's targets (None: not given).
    """

    step: int
    added: str
    text: str
    train: float
    val: float | None = None
    test: float | None = None


@dataclass
class MeanPromptResult:
    """The outcome of :func:`search_mean_prompt`.

    Attributes:
        text: The best string found ("" if no entry scores above zero).
        train_score: Its mean SCS against the train targets.
        steps: One record per accepted token, in order.
        entries: Pool entries screened at step 1 (train words + vocabulary pieces).
        candidates: Entries tried at each later step (at most ``pool_size``).
        pool: Those entries, best single score first.
        embedded: Texts the scorer's model embedded during the search (cache misses).
        stopped: Why the search ended: "max_tokens", "no improvement" or "empty pool".
    """

    text: str
    train_score: float
    steps: list[MeanPromptStep] = field(default_factory=list)
    entries: int = 0
    candidates: int = 0
    pool: list[str] = field(default_factory=list)
    embedded: int = 0
    stopped: str = "max_tokens"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def vocabulary_entries(tokenizer: Any) -> list[str]:
    """Clean word pieces from a tokenizer's vocabulary (empty list for None).

    '##' (WordPiece) and '▁' (SentencePiece) markers are stripped; special tokens,
    bracketed tokens such as ``[unused3]`` or ``<extra_id_0>``, pieces that are not
    ASCII letters only, and single letters are dropped; duplicates are removed
    (vocabulary order kept).
    """
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return []
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    vocab = tokenizer.get_vocab()
    out: dict[str, None] = {}
    for piece, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if piece in special or _SPECIAL.match(piece):
            continue
        word = piece.replace("▁", "")
        if word.startswith("##"):
            word = word[2:]
        if len(word) >= 2 and word.isascii() and word.isalpha():
            out.setdefault(word, None)
    return list(out)


def train_words(targets: Sequence[str]) -> list[str]:
    """Alphabetic words of the targets, most documents first (ties: first seen)."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for text in targets:
        for word in dict.fromkeys(_WORD.findall(text)):
            counts[word] += 1
            first.setdefault(word, len(first))
    return sorted(counts, key=lambda w: (-counts[w], first[w]))


def _scorer_tokenizer(scorer: Any) -> Any:
    try:
        return getattr(scorer, "tokenizer", None)
    except Exception:  # a scorer whose model exposes no tokenizer
        return None


def _memory_only(scorer: Any) -> Any:
    """A view of ``scorer`` sharing its model and in-memory cache but not its disk cache.

    Candidate strings are tens of thousands of throwaway texts: writing each to the
    disk cache (one SQLite commit apiece) would cost more than embedding them and
    bloat the cache. Scorers without a ``cache`` attribute are used as they are.
    """
    if getattr(scorer, "cache", None) is None:
        return scorer
    view = copy.copy(scorer)  # shallow: same model, memory dict and lock
    view.cache = None
    return view


def _objective(scorer: Any, texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
    """Mean SCS of each text against every target embedding."""
    out = np.empty(len(texts), dtype=np.float64)
    for i in range(0, len(texts), _CHUNK):
        emb = scorer.embed(list(texts[i : i + _CHUNK]))
        out[i : i + len(emb)] = scorer.sharpen(emb @ targets.T).mean(axis=1)
    return out


def _mean_scs(scorer: Any, text: str, targets: np.ndarray | None) -> float | None:
    if targets is None or not len(targets):
        return None
    return float(_objective(scorer, [text], targets)[0])


def search_mean_prompt(
    scorer: Any,
    train_targets: Sequence[str],
    *,
    max_tokens: int = 24,
    beam_width: int = 1,
    pool_size: int = 1000,
    seed: int = 0,
    val_targets: Sequence[str] | None = None,
    test_targets: Sequence[str] | None = None,
    on_step: Callable[[MeanPromptStep], None] | None = None,
) -> MeanPromptResult:
    """Build a fixed string that maximises mean SCS against ``train_targets``.

    The pool is every alphabetic word of the train targets plus the cleaned word
    pieces of the scorer's tokenizer vocabulary (:func:`vocabulary_entries`; none
    when the scorer has no tokenizer). Step 1 scores every pool entry alone
    (exhaustive); later steps append, with a space, each of the ``pool_size`` entries
    that scored best alone, to each string in the beam. All candidates go through
    ``scorer.embed`` in batches, cached in memory only (not in the scorer's disk
    cache). A step is accepted only if
    its best string strictly beats the previous best, else the search stops. With
    ``beam_width`` > 1 the beam keeps that many best distinct strings, so a step's
    best string need not extend the previous step's best.

    Args:
        scorer: An object with ``embed(texts) -> unit vectors``, ``sharpen(cos)`` and
            optionally ``tokenizer`` (e.g. :class:`~promptopt.scoring._scs.SCSScorer`).
        train_targets: The known true prompts the string is fitted to.
        max_tokens: Most tokens (appended entries) in the string.
        beam_width: Strings kept per step (1: greedy).
        pool_size: Entries tried at each step after the first.
        seed: Seeds the order of the pool, which breaks score ties.
        val_targets: Reported on after each step, never used for choices.
        test_targets: Reported on after each step, never used for choices.
        on_step: Called with each accepted :class:`MeanPromptStep`.

    Raises:
        ConfigError: on empty targets or settings below 1.
    """
    if not train_targets:
        raise ConfigError("the mean-prompt search needs at least one train target")
    for name, value in (("max_tokens", max_tokens), ("beam_width", beam_width),
                        ("pool_size", pool_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"mean prompt: {name} must be an integer >= 1, got {value!r}")
    entries = list(dict.fromkeys(train_words(train_targets) + vocabulary_entries(
        _scorer_tokenizer(scorer))))
    random.Random(seed).shuffle(entries)
    before = getattr(scorer, "embedded_count", 0)
    train = scorer.embed(list(train_targets))  # loads the model; targets may go to disk
    val = scorer.embed(list(val_targets)) if val_targets else None
    test = scorer.embed(list(test_targets)) if test_targets else None
    view = _memory_only(scorer)
    view_before = getattr(view, "embedded_count", 0)
    result = MeanPromptResult(text="", train_score=0.0, entries=len(entries))
    if entries:
        _search(view, entries, train, val, test, result, max_tokens, beam_width, pool_size,
                on_step)
    else:
        result.stopped = "empty pool"
    result.embedded = getattr(scorer, "embedded_count", 0) - before
    if view is not scorer:
        result.embedded += getattr(view, "embedded_count", 0) - view_before
    return result


def _search(
    scorer: Any,
    entries: list[str],
    train: np.ndarray,
    val: np.ndarray | None,
    test: np.ndarray | None,
    result: MeanPromptResult,
    max_tokens: int,
    beam_width: int,
    pool_size: int,
    on_step: Callable[[MeanPromptStep], None] | None,
) -> None:
    """The greedy / beam loop of :func:`search_mean_prompt`; fills ``result``."""
    single = _objective(scorer, entries, train)
    order = np.argsort(-single, kind="stable")
    pool = [entries[i] for i in order[:pool_size]]
    result.candidates, result.pool = len(pool), pool
    beam = [(entries[i], float(single[i])) for i in order[:beam_width]]
    best_text, best_score, token = beam[0][0], beam[0][1], beam[0][0]
    while best_score > result.train_score:
        step = len(result.steps) + 1
        record = MeanPromptStep(
            step=step, added=token, text=best_text, train=best_score,
            val=_mean_scs(scorer, best_text, val), test=_mean_scs(scorer, best_text, test),
        )
        result.steps.append(record)
        result.text, result.train_score = best_text, best_score
        if on_step is not None:
            on_step(record)
        if step >= max_tokens:
            result.stopped = "max_tokens"
            return
        texts: dict[str, str] = {}  # candidate string -> appended entry
        for prefix, _ in beam:
            for entry in pool:
                texts.setdefault(f"{prefix} {entry}", entry)
        cands = list(texts)
        scores = _objective(scorer, cands, train)
        top = np.argsort(-scores, kind="stable")[:beam_width]
        beam = [(cands[i], float(scores[i])) for i in top]
        best_text, best_score = beam[0]
        token = texts[best_text]
    result.stopped = "no improvement"


@optimizers.register("mean-prompt")
class MeanPrompt(Optimizer):
    """Learn a mean-prompt suffix from the train prompts (no LLM calls in the search).

    The search records each accepted string as a constant-prediction trial on the
    train, validation and test splits (``Evaluator.score_constant``, template = the
    start template with ``suffix`` = the string, meta ``kind="mean-prompt"``), so the
    SCS of the string alone is reported after every token; only the train scores
    drive the search, and these trials stay out of the history that ``select_final``
    ranks. The final choice scores, with the LLM,
    the start template and the start template with the learned suffix on the
    validation split; ties keep the start. The learned string stays on the optimizer
    as ``result_`` (a :class:`MeanPromptResult`).

    Args:
        max_tokens: Most tokens in the learned string.
        beam_width: Beam width (1: greedy).
        pool_size: Candidate entries tried per step after the first.
    """

    final_candidates = 1

    def __init__(self, *, max_tokens: int = 24, beam_width: int = 1, pool_size: int = 1000) -> None:
        self.max_tokens = max_tokens
        self.beam_width = beam_width
        self.pool_size = pool_size

    @classmethod
    def unsupported(cls, task: Task) -> str | None:
        """It fits a string to an embedding similarity: other metrics are refused."""
        if is_embedding_metric(task.scorer):
            return None
        return (f"the mean-prompt attack fits a string to an embedding similarity (metric "
                f"scs), but this task is judged by {task.scorer_name}")

    def validate(self) -> None:
        """Check that every setting is a positive integer."""
        for name in ("max_tokens", "beam_width", "pool_size"):
            value = getattr(self, name)
            self._check(isinstance(value, int) and value >= 1, name, "must be an integer >= 1")

    def search(self, ctx: SearchContext) -> None:
        """Fit the string to the train split's targets; record each accepted step."""
        scorer = ctx.task.scorer
        evaluator = ctx.evaluator
        self.result_: MeanPromptResult | None = None
        self.recorded_ = 0

        def record(step: MeanPromptStep) -> None:
            meta = {"kind": "mean-prompt", "step": step.step, "prefix": step.text,
                    "added": step.added}
            template = ctx.start.replace(suffix=step.text)
            for split in ("train", "val", "test"):  # val and test: reported, never chosen on
                evaluator.score_constant(step.text, split, meta=meta, template=template)
                self.recorded_ += 1

        self.result_ = search_mean_prompt(
            scorer,
            [e.target for e in ctx.train],
            max_tokens=self.max_tokens,
            beam_width=self.beam_width,
            pool_size=self.pool_size,
            seed=ctx.seed,
            val_targets=[e.target for e in ctx.val],
            test_targets=[e.target for e in ctx.task.examples("test")],
            on_step=record,
        )

    def select_final(
        self,
        ctx: SearchContext,
        evaluations: Sequence[Evaluation],
        selection: Selection | None = None,
    ) -> OptimizeResult:
        """Score the start and start + learned suffix on validation (LLM calls); the
        suffix is kept only when its gain is credible (:meth:`Optimizer.choose`)."""
        found = getattr(self, "result_", None)
        notes = []
        finalists = []
        if found is not None and found.text:
            notes.append(
                f"mean prompt ({len(found.steps)} tokens, stopped: {found.stopped}): "
                f"{found.text!r}; alone it scores {found.train_score:.4f} on train"
            )
            finalists.append(ctx.start.replace(suffix=found.text))
        else:
            notes.append("the mean-prompt search found no string; the result is the start")
        choice = self.choose(ctx, finalists, selection or Selection(),
                             finalist_meta={"kind": "mean-prompt"}, parents=[ctx.start.id])
        if finalists:
            if choice.best_other is None and choice.template.id == ctx.start.id:
                notes.append("start + mean prompt could not be scored on validation (no budget "
                             "left, or it failed)")
            else:
                gain = choice.best_other or choice.val_gain
                notes.append(f"validation: start {choice.start_val_score:.4f}, start + mean "
                             f"prompt {choice.start_val_score + gain.gain:.4f}")
        return OptimizeResult(
            template=choice.template,
            val_score=choice.val_score,
            start_template=ctx.start,
            start_val_score=choice.start_val_score,
            evaluations=len(evaluations) + getattr(self, "recorded_", 0),
            notes=notes + choice.notes,
            val_gain=choice.val_gain,
            choice=choice,
        )
