"""Making prompt-recovery training data: originals x rewrite instructions -> rewrites.

The way Kaggle "LLM Prompt Recovery" competitors made their data: pair original
texts with rewrite instructions (from a file, or built from the instruction families
of :mod:`promptopt.datagen._families`), ask a rewriter LLM to apply each
instruction, clean its answer like a prediction (:func:`~promptopt.tasks.strip_chatter`),
drop bad rewrites, and append Kaggle-format rows (``id, original_text, rewrite_prompt,
rewritten_text``) to a CSV file. A rerun on the same file continues it: the pairs it
holds are not generated again.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.datagen._families import instruction_stream, templates_for
from promptopt.datagen._io import (
    INSTRUCTION_COLUMNS,
    ORIGINAL_COLUMNS,
    DataFile,
    distinct,
    load_texts,
)
from promptopt.errors import ConfigError
from promptopt.llm import DEFAULT_PROPOSER, LLM, Budget, DiskCache, Usage
from promptopt.tasks import strip_chatter, truncate_tokens

DROP_REASONS = ("empty", "too_short", "copy", "repetitive", "duplicate")

SYSTEM_PROMPT = (
    "You rewrite texts. Apply the instruction to the text and reply with the rewritten "
    "text only: no introduction, no explanation, no quotes around it."
)
EXAMPLES: tuple[tuple[str, str, str], ...] = (  # (original, instruction, rewrite) for base models
    (
        "The train was late again, so I missed the first half of the meeting.",
        "Make it sound like a sports commentary.",
        "And the train is late once again, folks! Our commuter sprints for the door, but "
        "the first half of the meeting is already in the books!",
    ),
    (
        "Please remember to water the plants while I am away this weekend.",
        "Rewrite this as a polite note from a butler.",
        "If I may be so bold, sir, the greenery would be most grateful for a little water "
        "during your master's absence this weekend.",
    ),
)
_REWRITE_LABEL = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:the\s+)?(?:rewritten(?:\s+(?:text|version))?|rewrite|result|"
    r"output|answer|response)\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")
_UNIT = re.compile(r"[.!?\n]+")


@dataclass
class DataGenSummary:
    """What :func:`generate_data` did.

    Attributes:
        output: The CSV file.
        requested: Rows the file should hold (``n``).
        existing: Rows the file held before this call.
        written: Rows this call appended.
        skipped: Pairs met that the file already held (not generated again).
        dropped: Rewrites dropped, by reason (see :data:`DROP_REASONS`).
        stopped: ``"done"``, ``"out of pairs"`` or ``"max calls"``.
        model: The rewriter LLM.
        originals: Distinct original texts available.
        instructions: Distinct instructions given, or None for the built-in families.
        usage: LLM calls, cache hits, tokens and cost of this call.
    """

    output: str
    requested: int
    existing: int = 0
    written: int = 0
    skipped: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    stopped: str = "done"
    model: str = DEFAULT_PROPOSER
    originals: int = 0
    instructions: int | None = None
    usage: dict[str, float | int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows in the file now."""
        return self.existing + self.written

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "rows": self.rows}


def cut_text(text: str, max_tokens: int) -> str:
    """``text`` cut to about ``max_tokens`` tokens, at a sentence end where one is near."""
    cut = truncate_tokens(text, max_tokens)
    if cut == text:
        return text
    cut = cut.removesuffix(" ...")
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
    return cut[: end + 1].rstrip() if end >= len(cut) // 2 else cut


def render_rewrite(original: str, instruction: str, *, chat: bool) -> list[dict[str, str]]:
    """The rewriter prompt: system + user turns for chat models, few-shot text for base ones."""
    if chat:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Instruction: {instruction}\n\nText:\n{original}"},
        ]
    shots = [f"Original: {o}\nInstruction: {p}\nRewritten: {r}" for o, p, r in EXAMPLES]
    query = f"Original: {original}\nInstruction: {instruction}\nRewritten:"
    intro = ("Each text below is followed by an instruction and by the text rewritten the way "
             "the instruction asks.")
    return [{"role": "user", "content": "\n\n".join([intro, *shots, query])}]


BASE_STOP = ("\nOriginal:", "\nInstruction:", "\nRewritten:")


def clean_rewrite(raw: str) -> str:
    """The rewriter's answer without chatter ("Sure! Here is ...:", labels, wrapping quotes)."""
    return strip_chatter(raw, labels=_REWRITE_LABEL)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _contains(words: list[str], part: list[str]) -> bool:
    return f" {' '.join(part)} " in f" {' '.join(words)} "


def _is_copy(words: list[str], other: list[str], max_overlap: float) -> bool:
    a, b = set(words), set(other)
    if a and len(a & b) / len(a | b) >= max_overlap:
        return True
    return _contains(other, words)  # a verbatim stretch of it


def _ngrams(words: list[str], size: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


_EXAMPLE_NGRAMS = set().union(*(_ngrams(_words(r)) for _, _, r in EXAMPLES))


def drop_reason(
    rewrite: str, original: str, instruction: str, *, min_words: int = 3,
    max_overlap: float = 0.9,
) -> str | None:
    """Why a cleaned rewrite is unusable, or None if it is fine.

    ``"empty"``; ``"too_short"`` (fewer than ``min_words`` words); ``"copy"`` (word-set
    Jaccard similarity of at least ``max_overlap`` with, or a verbatim stretch of, the
    original, the instruction or a prompt example's rewrite, five words in a row from an
    example's rewrite, or the whole original (of five words or more) inside it);
    ``"repetitive"`` (at least four sentences or lines, at most half of them distinct).
    """
    words = _words(rewrite)
    if not words:
        return "empty"
    if len(words) < min_words:
        return "too_short"
    for other in (original, instruction, *(r for _, _, r in EXAMPLES)):
        if _is_copy(words, _words(other), max_overlap):
            return "copy"
    if _ngrams(words) & _EXAMPLE_NGRAMS:  # small base models borrow the example's phrases
        return "copy"
    source = _words(original)
    if len(source) >= 5 and _contains(words, source):  # the original with a few words around
        return "copy"
    units = [u.strip().lower() for u in _UNIT.split(rewrite) if u.strip()]
    if len(units) >= 4 and len(set(units)) * 2 <= len(units):
        return "repetitive"
    return None


def _shuffled(items: Sequence[str], rng: random.Random) -> Iterator[str]:
    """``items`` in random order, lazily (no full copy for long lists)."""
    if len(items) <= 5000:
        order = list(items)
        rng.shuffle(order)
        yield from order
        return
    seen: set[int] = set()
    while len(seen) < len(items):
        i = rng.randrange(len(items))
        if i not in seen:
            seen.add(i)
            yield items[i]


def pair_stream(
    originals: Sequence[str], instructions: Sequence[str] | None, *, seed: int = 0,
    families: Sequence[str] | None = None,
) -> Iterator[tuple[str, str]]:
    """Distinct (original, instruction) pairs in a seeded order, originals used evenly.

    Originals are visited in a seeded random order, round after round; each time an
    original is visited it is paired with the next instruction of its own seeded
    sequence (a permutation of ``instructions``, or distinct built-in prompts when
    ``instructions`` is None), so no pair comes twice and an original's pairs do not
    depend on the other originals.
    """
    order = list(originals)
    random.Random(f"{seed}\0originals").shuffle(order)
    streams: list[tuple[str, Iterator[str]]] = [
        (o, _shuffled(instructions, random.Random(f"{seed}\0{o}")) if instructions is not None
         else instruction_stream(o, seed=seed, families=families))
        for o in order
    ]
    while streams:
        alive = []
        for original, stream in streams:
            prompt = next(stream, None)
            if prompt is not None:
                alive.append((original, stream))
                yield original, prompt
        streams = alive


def _pair_seed(seed: int, original: str, instruction: str) -> int:
    blob = f"{seed}\0{original}\0{instruction}".encode()
    return int(hashlib.sha256(blob).hexdigest()[:8], 16)


def _check(n: int, batch_size: int, min_words: int, max_overlap: float,
           max_calls: int | None) -> None:
    for name, value, ok in (
        ("n", n, n >= 1), ("batch_size", batch_size, batch_size >= 1),
        ("min_words", min_words, min_words >= 0),
        ("max_overlap", max_overlap, 0 < max_overlap <= 1),
        ("max_calls", max_calls, max_calls is None or max_calls >= 1),
    ):
        if not ok:
            raise ConfigError(f"invalid {name} {value!r}: n, batch_size and max_calls must be "
                              "positive, min_words >= 0, max_overlap in (0, 1]")


def _load_inputs(
    originals: str | Path | Sequence[str],
    instructions: str | Path | Sequence[str] | None,
    out_path: Path,
    *,
    families: Sequence[str] | None,
    max_text_tokens: int,
) -> tuple[list[str], list[str] | None]:
    """The distinct original texts (cut) and instructions (None: the built-in families)."""
    for source in (originals, instructions):
        if isinstance(source, (str, Path)) and Path(source).resolve() == out_path.resolve():
            raise ConfigError(f"the output {out_path} is also an input file; write elsewhere")
    texts = (load_texts(originals, columns=ORIGINAL_COLUMNS, what="original texts")
             if isinstance(originals, (str, Path)) else distinct([t for t in originals if t]))
    texts = distinct([cut_text(t, max_text_tokens) for t in texts])
    prompts: list[str] | None = None
    if isinstance(instructions, (str, Path)):
        prompts = load_texts(instructions, columns=INSTRUCTION_COLUMNS, what="instructions")
    elif instructions is not None:
        prompts = distinct([p.strip() for p in instructions if p.strip()])
    if not texts or prompts == []:
        raise ConfigError("no original texts" if not texts else "no instructions")
    if families is not None and prompts is not None:
        raise ConfigError("families choose built-in instructions: give them or instructions")
    templates_for(families)  # unknown family names fail here, before the output is touched
    return texts, prompts


def _next_batch(pairs: Iterator[tuple[str, str]], data: DataFile, summary: DataGenSummary,
                room: int) -> list[tuple[str, str]]:
    """Up to ``room`` pairs the output does not hold yet (those it holds are skipped)."""
    batch: list[tuple[str, str]] = []
    for pair in pairs:
        if pair in data.pairs:
            summary.skipped += 1
            continue
        batch.append(pair)
        if len(batch) >= room:
            break
    return batch


def _keep(batch: Sequence[tuple[str, str]], raws: Sequence[str], data: DataFile,
          summary: DataGenSummary, *, min_words: int, max_overlap: float,
          on_progress: Callable[[], None] | None) -> None:
    """Clean each rewrite; append the good ones to the output, count the dropped by reason."""
    for (original, prompt), raw in zip(batch, raws, strict=True):
        rewrite = clean_rewrite(raw)
        reason = drop_reason(rewrite, original, prompt, min_words=min_words,
                             max_overlap=max_overlap)
        if reason is None and data.has_rewrite(rewrite):
            reason = "duplicate"
        if reason is not None:
            summary.dropped[reason] += 1
            continue
        data.append(original, prompt, rewrite)
        summary.written += 1
        if on_progress is not None:
            on_progress()


def generate_data(
    originals: str | Path | Sequence[str],
    output: str | Path,
    *,
    instructions: str | Path | Sequence[str] | None = None,
    n: int = 100,
    model: str = DEFAULT_PROPOSER,
    seed: int = 0,
    families: Sequence[str] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
    max_text_tokens: int = 300,
    min_words: int = 3,
    max_overlap: float = 0.9,
    batch_size: int = 8,
    max_calls: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    api_base: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DataGenSummary:
    """Generate rewrites until ``output`` holds ``n`` rows (appending, resumable).

    Args:
        originals: A file of original texts (.txt one per line, or a .csv/.tsv/.jsonl/
            .parquet column ``original_text`` or ``text``), or the texts themselves.
        output: The CSV file to append rows to (created with a header if missing).
        instructions: A file of rewrite instructions (.txt one per line, or a column
            ``rewrite_prompt`` or ``instruction``), the instructions themselves, or None
            for prompts built from the built-in instruction families.
        n: Rows the output file should hold; rows already there count.
        model: The rewriter, any LiteLLM model string (chat or ``llamacpp/`` base model).
        seed: Seed of the pair order and of each rewrite's sampling.
        families: Built-in families to combine (default: all), e.g. ``["tone", "persona"]``.
        temperature: Sampling temperature of the rewriter.
        max_tokens: Longest rewrite, in tokens.
        max_text_tokens: Originals are cut to about this many tokens (at a sentence end);
            the cut text is what the row holds.
        min_words: Rewrites with fewer words are dropped (``too_short``).
        max_overlap: Rewrites this similar to the original are dropped (``copy``).
        batch_size: Requests sent together (and rows written per flush, at most).
        max_calls: Stop after this many LLM requests (cache hits included).
        cache: Use the disk cache (``PROMPTOPT_CACHE_DIR``): a rerun pays nothing twice.
        cache_dir: Cache folder (overrides the environment).
        api_base: Provider URL, e.g. an OpenAI-compatible server.
        on_progress: Called as ``on_progress(rows_in_file, n)`` after each row written.

    Raises:
        DataError: bad input files, or an existing output with other columns.
        ConfigError: invalid settings.
        LLMError: the rewriter failed for good (rows written so far stay).
    """
    _check(n, batch_size, min_words, max_overlap, max_calls)
    out_path = Path(output)
    texts, prompts = _load_inputs(originals, instructions, out_path, families=families,
                                  max_text_tokens=max_text_tokens)
    data = DataFile(out_path)  # reads the rows already there; checks the header
    summary = DataGenSummary(output=str(out_path), requested=n, existing=len(data.rows),
                             model=model, originals=len(texts),
                             instructions=None if prompts is None else len(prompts))
    usage, budget = Usage(), Budget(max_calls)
    llm = LLM(model, temperature=temperature, max_tokens=max_tokens, usage=usage, budget=budget,
              cache=DiskCache(cache_dir, "llm") if cache else None, api_base=api_base)
    chat = llm.is_chat
    pairs = pair_stream(texts, prompts, seed=seed, families=families)
    try:
        with data.appending():
            while data.count < n:
                room = int(min(batch_size, n - data.count, budget.remaining))
                if room < 1:
                    summary.stopped = "max calls"
                    break
                batch = _next_batch(pairs, data, summary, room)
                if not batch:
                    summary.stopped = "out of pairs"
                    break
                raws = llm.complete_many(
                    [render_rewrite(o, p, chat=chat) for o, p in batch],
                    seeds=[_pair_seed(seed, o, p) for o, p in batch],
                    stop=None if chat else BASE_STOP,
                )
                _keep(batch, raws, data, summary, min_words=min_words, max_overlap=max_overlap,
                      on_progress=None if on_progress is None
                      else (lambda: on_progress(data.count, n)))
    finally:
        summary.usage = usage.as_dict()
    return summary
