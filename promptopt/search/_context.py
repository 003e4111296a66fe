"""What a search works with: :class:`SearchContext`, and reading the proposer's answers.

:class:`SearchContext` holds a run's data, evaluator, proposer and seeded RNG, and the
proposal bookkeeping every method shares: :func:`read_proposal` pulls an instruction
out of a proposer's raw answer, :meth:`SearchContext.accept` rejects unusable ones
(counted by reason, never evaluated), and sampled proposer calls get deterministic
seeds. The optimizer base (:mod:`promptopt.optimizers._base`) builds one per run.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from promptopt.data import Example
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM
from promptopt.search._content import content_problem, task_words
from promptopt.search._selection import Selection
from promptopt.tasks import Task
from promptopt.template import Template

MAX_INSTRUCTION_CHARS = 1500
MAX_PREFIX_CHARS = 80
"""The longest answer prefix :meth:`SearchContext.accept_prefix` takes (a few words)."""
MIN_PREFIX_ECHO_CHARS = 12
"""A proposed prefix this long or longer that the asking prompt's wording holds is an echo."""
PROPOSER_MAX_TOKENS = 160
OPENING_MIN_SHARE = 0.1
"""The least share of the training answers that must begin with one word for
:func:`opening_word` to name it."""
_FIRST_WORD = re.compile(r"^[^A-Za-z]*([A-Za-z][A-Za-z-]*)")


def opening_word(
    answers: Sequence[str], *, min_share: float = OPENING_MIN_SHARE
) -> tuple[str, int]:
    """The word most of ``answers`` begin with, and how many begin with it.

    Leading marks (``**``, quotes) are skipped and words compared without case; the
    word is returned as the first answer that begins with it writes it. ``("", 0)``
    when fewer than two answers, or fewer than ``min_share`` of them, share it.
    """
    firsts = [m.group(1) for a in answers if (m := _FIRST_WORD.match(a or ""))]
    counts = Counter(w.lower() for w in firsts)
    if not counts:
        return "", 0
    word, n = counts.most_common(1)[0]
    if n < 2 or n < min_share * len(answers):
        return "", 0
    return next(w for w in firsts if w.lower() == word), n



class History(Protocol):
    """The evaluations other workers of the study recorded (what a search may reuse).

    :class:`promptopt.runs.SharedHistory` reads them from the study; an optimizer only
    needs these two methods.
    """

    def evaluations(self, split: str, examples: Sequence[Example]) -> list[Evaluation]:
        """Other workers' evaluations on exactly ``examples`` of ``split``."""
        ...

    def reusable(
        self,
        template: Template,
        split: str,
        examples: Sequence[Example],
        *,
        parents: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> Evaluation | None:
        """Another worker's evaluation of ``template`` on ``examples``, or None."""
        ...


STRAY_TAG = re.compile(r"</?\s*[A-Za-z_]+\s*>")
"""A tag such as ``<INS>``, ``</prompt>`` or ``<END>`` left in a proposer's answer."""

_LABEL = r"(?:(?:final|new|basic|improved)\s+)?(?:prompt|instruction)s?\s*\d*\s*:"


def strip_tags(text: str) -> str:
    """``text`` without stray tags, its whitespace collapsed within each line.

    Blank lines are dropped; the remaining line breaks are kept.
    """
    lines = (" ".join(STRAY_TAG.sub(" ", line).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def read_proposal(raw: str, tag: str = "INS", *, echo_labels: Sequence[str] = ()) -> str:
    """The one instruction a proposer's answer proposes, or ``""`` when it holds none.

    The meta-prompts end with ``<TAG>``, so a base model continues inside the tag and
    never writes it, while a chat model may repeat it, or a label such as ``"Final
    prompt:"`` before or after it; both are skipped. The proposal is the text up to
    the first closing tag, or, when the answer runs on without one (or opens a new
    tag first), its first non-empty line; text before an opening tag that follows a
    preamble ("Here is one: <INS>...") is skipped. Stray tags are removed and whitespace is
    collapsed within each line. An answer that merely echoes the meta-prompt's
    exemplars (its first line starts with one of ``echo_labels``, e.g. ``"Original
    text:"``) or has no letters holds no proposal.

    Args:
        raw: The proposer's raw answer.
        tag: The tag name the meta-prompt asked the proposal to be wrapped in.
        echo_labels: Line labels of the exemplars shown in the meta-prompt.

    Returns:
        The proposed instruction (possibly several lines), or ``""``.
    """
    name = re.escape(tag)
    text = (raw or "").strip()
    lead = re.match(rf"(?:\s*(?:<{name}>|{_LABEL}))*\s*", text, re.IGNORECASE)
    text = text[lead.end() if lead else 0 :]
    marker = re.search(rf"<(/?){name}>", text, re.IGNORECASE)
    preamble = text[: marker.start()].strip().lower() if marker else ""
    if marker and not marker.group(1) and preamble:
        # A chat-style preamble ("Here is a new one: <INS>...") before the opening tag;
        # an echoed exemplar there means the answer holds no proposal.
        if any(preamble.startswith(label.lower()) for label in echo_labels):
            return ""
        text = text[marker.end() :]
        marker = re.search(rf"<(/?){name}>", text, re.IGNORECASE)
    # The proposal ends at the next tag.
    body = strip_tags(text[: marker.start()] if marker else text)
    if not (marker and marker.group(1)):  # not closed: the first line only
        body = body.split("\n", 1)[0]
    first = body.split("\n", 1)[0].lower()
    if not any(ch.isalpha() for ch in body) or any(
        first.startswith(label.lower()) for label in echo_labels
    ):
        return ""
    return body


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _unquote(text: str | None) -> str:
    """A proposal without surrounding blanks and quotes, and out of a JSON object that
    holds it as its one text value (:func:`unwrap_json`)."""
    return unwrap_json((text or "").strip()).strip().strip("\"'`").strip()


def unwrap_json(text: str) -> str:
    """The one string a JSON object holds (``{"new_instruction": "Read ..."}``: a chat
    proposer's habit), else ``text`` as it is. An object with several text values, or
    none, is left whole."""
    if not (text.startswith("{") and text.endswith("}")):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            return only
    return text


MIN_ECHO_CHARS = 40
"""A proposal this long or longer that the meta-prompt already holds is an echo."""
COPIED_CHARS = 40
"""Letters and digits in a row of an example's input text that a proposal may not copy
(checked at every ``COPIED_CHARS // 2``-th place, so any copied passage of
``1.5 * COPIED_CHARS`` or more is found, however it was spaced or punctuated)."""


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def copies_text(proposal: str, texts: Sequence[str]) -> bool:
    """Whether ``proposal`` holds a passage of one of ``texts`` (already :func:`_letters`):
    :data:`COPIED_CHARS` letters and digits in a row, starting at a multiple of half that."""
    letters = _letters(proposal)
    step = COPIED_CHARS // 2
    pieces = {letters[i:i + COPIED_CHARS] for i in range(0, len(letters) - COPIED_CHARS + 1, step)}
    return any(piece in text for piece in pieces for text in texts)


_SENTENCE_END = re.compile(r"""[.!?:;)\]"'`*>]\s*$""")


def looks_truncated(raw: str, max_tokens: int | None) -> bool:
    """Whether an answer seems cut off by ``max_tokens``: it is about that long (four
    characters a token, less a quarter) and does not end a sentence. An answer that a
    stop sequence ended is short and passes."""
    text = (raw or "").rstrip()
    if not max_tokens or len(text) < 3 * max_tokens:
        return False
    return not _SENTENCE_END.search(text)


class SearchContext:
    """What a search strategy works with: data, evaluator, proposer, seeded RNG.

    It also owns the proposal bookkeeping every method shares: reading proposals out
    of the proposer's answers, rejecting bad ones (counted, never evaluated), and
    deterministic seeds for sampled proposer calls.

    With several workers on one study (``shared``), :meth:`others` returns the train
    evaluations other workers recorded, and :meth:`evaluate` reuses another worker's
    evaluation of the same template on the same examples instead of paying for it.
    ``batch_seed`` gives minibatches a stream of their own (the study's seed, shared
    by its workers); without it they come from :attr:`rng`, as in a lone run.
    """

    def __init__(
        self,
        *,
        task: Task,
        evaluator: Evaluator,
        proposer: LLM,
        start: Template,
        seed: int,
        max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
        shared: History | None = None,
        batch_seed: int | None = None,
    ) -> None:
        self.task = task
        self.evaluator = evaluator
        self.proposer = proposer
        self.start = start
        self.base = start
        """The template proposals build on: the start, or the start opened with the word
        most training answers begin with (:meth:`open_answers`)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.max_instruction_chars = max_instruction_chars
        self.rejected: Counter[str] = Counter()
        self.proposed = 0
        self._seen: set[str] = {_normalize(start.instruction)}
        self._seen_prefixed: set[tuple[str, str]] = {
            (_normalize(start.instruction), _normalize(start.answer_prefix))}
        self._proposal_calls = 0
        self.shared = shared
        self._batch_rng = self.rng if batch_seed is None else random.Random(batch_seed)
        self._shown: set[Any] = set()
        self._task_words: frozenset[str] | None = None
        self._echo_sources: list[str] = []
        self._example_texts: list[str] | None = None
        self._max_tokens: int | None = None
        self.selection: Selection = Selection()
        """The run's final-choice settings (set by :meth:`Optimizer.optimize`)."""

    @property
    def train(self) -> list[Example]:
        """The train split."""
        return self.task.examples("train")

    @property
    def val(self) -> list[Example]:
        """The validation split."""
        return self.task.examples("val")

    @property
    def example_texts(self) -> list[str]:
        """The train examples' input texts, letters and digits only (see :func:`copies_text`)."""
        if self._example_texts is None:
            letters = (_letters(value) for e in self.train for value in e.inputs.values())
            self._example_texts = [text for text in letters if len(text) >= COPIED_CHARS]
        return self._example_texts

    @property
    def echo_labels(self) -> list[str]:
        """The ``"Label:"`` prefixes of the task's exemplar lines, plus generic ones.

        An answer starting with one of them echoes a meta-prompt's exemplar rather
        than proposing an instruction (see :func:`read_proposal`).
        """
        labels = {"Input:", "Output:", "Example ", "Score:"}
        if self.train:
            for line in self.task.format_example(self.train[0]).split("\n"):
                label, sep, _ = line.partition(":")
                if sep and 0 < len(label) <= 40:
                    labels.add(label.strip() + ":")
        return sorted(labels)

    def open_answers(self) -> str:
        """Make :attr:`base` the start with an answer prefix: the word most training
        answers begin with (:func:`opening_word`), where the task offers answer prefixes
        and the start has none. Returns a note saying so, or ``""`` (base stays the start).

        A small proposer cannot be asked for it: shown ten prompt-recovery answers, the
        Qwen 1.5B named "1. R", "retell" or a list of words as the one most begin with.
        """
        offers = any(p.strip() for p in getattr(self.task, "answer_prefixes", ()))
        if not offers or self.start.answer_prefix.strip():
            return ""
        answers = [e.target for e in self.train if isinstance(e.target, str)]
        word, n = opening_word(answers)
        if not word:
            return ""
        self.base = self.start.replace(answer_prefix=word)
        self._seen_prefixed.add((_normalize(self.base.instruction), _normalize(word)))
        return (f"proposals build on the start opened with {word!r}, the word {n} of "
                f"{len(answers)} training answers begin with")

    def minibatch(self, size: int) -> list[Example]:
        """A seeded random sample of the train split (all of it if smaller)."""
        train = self.train
        return list(train) if size >= len(train) else self._batch_rng.sample(train, size)

    def evaluate(
        self,
        template: Template,
        examples: Sequence[Example] | None = None,
        *,
        parents: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate on ``examples`` (default: the whole train split); may raise BudgetExhausted.

        An evaluation another worker recorded for this template and these examples is
        reused when possible (see :meth:`History.reusable`): no call, no trial.
        """
        if self.shared is not None:
            chosen = list(self.train if examples is None else examples)
            if not self.evaluator.is_cached(template, "train", chosen):
                reused = self.shared.reusable(
                    template, "train", chosen, parents=parents, meta=meta
                )
                if reused is not None:
                    self.evaluator.adopt(reused)
                    return reused
        return self.evaluator.evaluate(
            template, "train", examples=examples, parents=parents, meta=meta
        )

    def others(self, examples: Sequence[Example]) -> list[Evaluation]:
        """Train evaluations on ``examples`` that other workers recorded, not returned before.

        Oldest first; each one's ``scores`` repeat its mean (see
        :meth:`History.evaluations`). Their instructions count as seen, so a
        proposal that repeats one is rejected as a duplicate. Empty for a lone run.
        """
        if self.shared is None:
            return []
        new = []
        for ev in self.shared.evaluations("train", examples):
            key = ev.meta.get("trial")
            if key in self._shown:
                continue
            self._shown.add(key)
            self._seen.add(_normalize(ev.template.instruction))
            new.append(ev)
        return new

    @property
    def proposal_calls(self) -> int:
        """Proposer requests made so far (:meth:`propose`)."""
        return self._proposal_calls

    def can_afford(self, n_calls: int) -> bool:
        """Whether ``n_calls`` more LLM requests fit the budget."""
        return self.evaluator.can_afford(n_calls)

    def propose(
        self,
        prompt: str,
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = PROPOSER_MAX_TOKENS,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Ask the proposer ``n`` times (seeded samples); returns the raw answers.

        ``stop`` ends generation early, e.g. at the closing tag of a one-proposal
        answer, so a rambling model does not spend ``max_tokens`` every time.
        """
        self._echo_sources = [_normalize(prompt)]
        self._max_tokens = max_tokens
        seeds = []
        for _ in range(n):
            self._proposal_calls += 1
            seeds.append(self.seed * 1_000_003 + self._proposal_calls)
        messages = [[{"role": "user", "content": prompt}]] * n
        return self.proposer.complete_many(
            messages, temperature=temperature, max_tokens=max_tokens, seeds=seeds, stop=stop
        )

    def accept(
        self,
        instruction: str,
        base: Template | None = None,
        *,
        truncated: bool = False,
        echo_of: Sequence[str] | None = None,
        frame: str = "",
    ) -> Template | None:
        """Turn a proposed instruction into a template, or count why it is rejected.

        Rejected: empty, cut off by the proposer's token limit (``truncated``, see
        :func:`looks_truncated`), absurdly long, an echo (the ``base`` instruction
        again, or a long passage of the meta-prompt or of ``echo_of``: by default
        the last prompt sent by :meth:`propose`, which holds the shown examples; or a
        passage of a train example's input text, even sewn in among other words: "echo
        of an example"), a duplicate of anything seen in this run, unusable for the
        task (e.g. broken placeholders), or holding no task content (``"no task
        content (praises itself)"``, ``"(echoes the meta-prompt)"``, ``"(fits any
        task)"``; see :func:`~promptopt.search._content.content_problem`). ``base``
        supplies the demos, prefix and suffix (default: :attr:`base`);
        ``frame`` is the fixed wording of the meta-prompt that asked for the proposal
        (without the examples and instructions it shows), ``""`` if none.
        """
        self.proposed += 1
        text = _unquote(instruction)
        norm = _normalize(text)
        sources = self._echo_sources if echo_of is None else [_normalize(e) for e in echo_of]
        reason = None
        if not text:
            reason = "empty"
        elif truncated:
            reason = "truncated"
        elif len(text) > self.max_instruction_chars:
            reason = "too long"
        elif base is not None and norm == _normalize(base.instruction):
            reason = "echo of parent"
        elif norm in self._seen:
            reason = "duplicate"
        elif len(norm) >= MIN_ECHO_CHARS and any(norm in src for src in sources):
            reason = "echo of prompt"
        elif copies_text(text, self.example_texts):
            reason = "echo of an example"
        elif self.task.validate_instruction(text):
            reason = "invalid for task"
        else:
            problem = content_problem(text, frame=frame, protected=self.task_words)
            if problem:
                reason = f"no task content ({problem})"
        if reason:
            self.rejected[reason] += 1
            return None
        self._seen.add(_normalize(text))
        return (base or self.base).replace(instruction=text)

    def accept_prefix(self, prefix: str, base: Template, *, truncated: bool = False,
                      frame: str = "") -> Template | None:
        """Turn a proposed answer prefix into ``base`` with it, or count why it is rejected.

        Rejected: empty, cut off by the proposer's token limit, longer than
        :data:`MAX_PREFIX_CHARS` or more than one line ("prefix too long"), ``base``'s
        own prefix again ("echo of parent"), words of ``frame`` (the fixed wording of the
        prompt that asked for it: "echo of prompt"), or the same instruction and prefix
        as a template proposed before in this run ("duplicate").
        """
        self.proposed += 1
        text = _unquote(prefix)
        key = (_normalize(base.instruction), _normalize(text))
        reason = None
        if not text:
            reason = "empty"
        elif truncated:
            reason = "truncated"
        elif len(text) > MAX_PREFIX_CHARS or "\n" in text:
            reason = "prefix too long"
        elif key[1] == _normalize(base.answer_prefix):
            reason = "echo of parent"
        elif len(key[1]) >= MIN_PREFIX_ECHO_CHARS and key[1] in _normalize(frame):
            reason = "echo of prompt"
        elif key in self._seen_prefixed:
            reason = "duplicate"
        if reason:
            self.rejected[reason] += 1
            return None
        self._seen_prefixed.add(key)
        return base.replace(answer_prefix=text)

    @property
    def task_words(self) -> frozenset[str]:
        """The task's own words (start instruction and field names; see
        :func:`~promptopt.search._content.task_words`)."""
        if self._task_words is None:
            fields = [*self.task.input_fields, self.task.target_field]
            self._task_words = task_words(self.start.instruction, fields)
        return self._task_words

    def accept_answers(
        self,
        raw_answers: Sequence[str],
        base: Template | None = None,
        *,
        tag: str = "INS",
        echo_labels: Sequence[str] | None = None,
        frame: str = "",
    ) -> list[Template]:
        """Read one proposal per raw answer (:func:`read_proposal`) and :meth:`accept` it.

        An answer holding no proposal counts as proposed and rejected ("no proposal in
        answer"). ``echo_labels`` defaults to :attr:`echo_labels`; ``frame`` is passed
        to :meth:`accept`.
        """
        labels = self.echo_labels if echo_labels is None else echo_labels
        out = []
        for raw in raw_answers:
            text = read_proposal(raw, tag, echo_labels=labels)
            if not text:
                self.proposed += 1
                self.rejected["no proposal in answer"] += 1
                continue
            closed = re.search(rf"</{re.escape(tag)}>", raw or "", re.IGNORECASE)
            cut = not closed and looks_truncated(raw, self._max_tokens)
            template = self.accept(text, base, truncated=cut, frame=frame)
            if template is not None:
                out.append(template)
        return out
