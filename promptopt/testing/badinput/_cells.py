"""Cell values for generated dataset files: ordinary, tricky and broken text."""

from __future__ import annotations

import random
from typing import Any

WORDS = ("make", "it", "formal", "the", "text", "poem", "pirate", "shorter", "email", "tone")

FORMULAS = (
    "=cmd|' /C calc'!A0", "=1+2", "+1", "-2", "@x", "@SUM(A1:A9)", '=HYPERLINK("http://x","y")',
    "\t=1", "-=2+3", "=A1;B2",
)
UNICODE = (
    "héllo wörld", "日本語のテキスト", "مرحبا بالعالم", "emoji 🙂👍🏽", "e\u0301 combining",
    "line\u2028separator", "next\x85line", "no\u00a0break", "zero\u200bwidth", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\ufeffbom inside", "right\u202eto left",
)
TRICKY = (
    'a "quoted" word', '"fully quoted"', "comma, inside", "tab\tinside", "new\nline",
    "crlf\r\nline", "cr\ronly", "trailing backslash\\", "'single'", '""', '\\"escaped\\"',
    "  padded  ", "#comment-like", "[/bold] markup [red]", "semi;colon", "<b>html</b>",
    "end quote\"", "mid\"quote",
)
PLACEHOLDERS = (
    "{original_text}", "Keep {rewritten_text} as is", "{rewrite_prompt}", "{{original_text}}",
    "{0} {} {x}", "${original_text}", "%(original_text)s", "{original_text}{rewritten_text}",
)
NUMBERS = ("123", "1e5", "NaN", "nan", "null", "None", "NA", "N/A", "TRUE", "-0", "0x1F", "1,000")
BLANKS = ("", " ", "   ", "\t", "\u00a0", "\u3000", "\n", " \r\n ")
NOT_TEXT: tuple[Any, ...] = (7, -1, 2.5, True, False, [1, "a"], {"k": "v"}, 0)


def words(rng: random.Random, n: int | None = None) -> str:
    """A few plain words."""
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(1, 6)))


def text_cell(rng: random.Random, *, limit: int, nul: bool = True) -> str:
    """A text cell: plain, unicode, formula-like, quotes and line breaks, placeholders,
    numbers as text, blank, very long (over or under ``limit``), or with a NUL."""
    kind = rng.choices(
        ["plain", "unicode", "formula", "tricky", "placeholder", "number", "blank", "long",
         "huge", "nul"],
        weights=[60, 10, 8, 12, 8, 6, 1, 3, 0.7, 0.4 if nul else 0],
    )[0]
    if kind == "plain":
        return words(rng)
    if kind == "long":
        return ("x" * (limit - 2))[: max(1, limit - rng.randint(0, 3))]
    if kind == "huge":
        return "y" * (limit + rng.randint(1, 50))
    if kind == "nul":
        text = words(rng)
        at = rng.randint(0, len(text))
        return text[:at] + "\x00" + text[at:]
    pool = {"unicode": UNICODE, "formula": FORMULAS, "tricky": TRICKY,
            "placeholder": PLACEHOLDERS, "number": NUMBERS, "blank": BLANKS}[kind]
    value = rng.choice(pool)
    return value if rng.random() < 0.6 else f"{words(rng, 2)} {value}"


def json_cell(rng: random.Random, *, limit: int) -> Any:
    """A JSON Lines value: mostly text, sometimes null, numbers, lists or lone surrogates."""
    roll = rng.random()
    if roll < 0.02:
        return None
    if roll < 0.04:
        return rng.choice(NOT_TEXT)
    if roll < 0.05:
        return f"{words(rng, 2)} \ud800 lone"
    return text_cell(rng, limit=limit)
