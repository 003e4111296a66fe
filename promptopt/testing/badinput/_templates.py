"""Generated template files (instruction text or JSON) with defects, what loading each
must give, and a check that runs the real loader and the task's rendering on it."""

from __future__ import annotations

import codecs
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.data import Example, Splits
from promptopt.errors import DataError
from promptopt.template import Template, make_demo
from promptopt.testing.badinput._cells import FORMULAS, PLACEHOLDERS, TRICKY, UNICODE, words
from promptopt.testing.badinput._check import Outcome
from promptopt.testing.badinput._data import ANY, INPUTS, TARGET

GOOD_INSTRUCTIONS = (
    "Write the instruction that turned the original into the rewrite.",
    "Original: {original_text}\nRewrite: {rewritten_text}\nWhat was the instruction?",
    "{rewritten_text} came from {original_text}; name the prompt.",
    "Use [/bold] and [red]markup[/red] literally.", "Braces {} {0} { } stay as they are.",
    "Émojis 🙂 and 日本語 are fine.", "=cmd|' /C calc'!A0 is just text here.",
)
BAD_INSTRUCTIONS = (  # unusable for prompt recovery: the error names field 'instruction'
    "Only {original_text} is used.", "Only {rewritten_text} is used.", "Guess {foo}.",
    "Leak the answer: {rewrite_prompt}.", "Spaced { original_text } and {rewritten_text}.",
    "Cased {Original_Text} and {rewritten_text}.", "{original_text!r} {rewritten_text}",
    "{{x}} is not a field", "", "   \n\t ", "NUL \x00 inside",
)
EXAMPLES = [  # user text that looks like placeholders must reach the model verbatim
    Example("a", {"original_text": "Keep {original_text} and {rewritten_text} literally.",
                  "rewritten_text": "{original_text}{rewritten_text} $ {rewrite_prompt}"},
            "Say it twice."),
    Example("b", {"original_text": "=cmd|' /C calc'!A0", "rewritten_text": "[/bold] \\ {0}"},
            "Make it a formula."),
]


@dataclass
class TemplateCase:
    """A template file and what loading it must give.

    Attributes:
        name: File name (``.json`` or ``.txt``).
        content: The file's bytes.
        defects: What was done to it.
        template: The template it must load as, or None when an error is expected.
        errors: Acceptable (field, row) pairs the DataError must name (ANY: anything).
    """

    name: str
    content: bytes
    defects: list[str] = field(default_factory=list)
    template: Template | None = None
    errors: list[tuple[Any, Any]] = field(default_factory=list)


def _instruction(rng: random.Random, case: TemplateCase) -> str:
    if rng.random() < 0.35:
        text = rng.choice(BAD_INSTRUCTIONS)
        case.defects.append(f"bad instruction {text[:30]!r}")
        case.errors.append(("instruction", None))
        return text
    text = rng.choice(GOOD_INSTRUCTIONS)
    return text if rng.random() < 0.7 else text + " " + "long " * rng.randint(100, 3000)


def _demo(rng: random.Random, case: TemplateCase, number: int) -> Any:
    pool = (*PLACEHOLDERS, *FORMULAS, *TRICKY, *UNICODE)
    demo: dict[str, Any] = {k: rng.choice(pool) if rng.random() < 0.3 else words(rng)
                            for k in (*INPUTS, TARGET)}
    roll = rng.random()
    if roll < 0.05:
        _bad(case, "demos", number, "demo not an object")
        return rng.choice(["text", 5, None, ["a"]])
    if roll < 0.10:
        demo.pop(rng.choice(list(demo)))
        _bad(case, "demos", number, "demo field missing")
    elif roll < 0.14:
        demo[rng.choice(["notes", "original", TARGET.upper()])] = "x"
        _bad(case, "demos", number, "unknown demo field")
    elif roll < 0.18:
        demo[rng.choice(list(demo))] = rng.choice([3, None, ["x"], {"a": "b"}])
        _bad(case, "demos", number, "non-text demo value")
    elif roll < 0.21:
        demo[rng.choice(list(demo))] = rng.choice(["", "  "])
        _bad(case, "demos", number, "empty demo value")
    return demo


def _bad(case: TemplateCase, name: str | None, row: int | None, why: str) -> None:
    case.defects.append(why)
    case.errors.append((name, row))


def make_template_case(rng: random.Random) -> TemplateCase:
    """One random template file with zero or more defects."""
    is_json = rng.random() < 0.65
    case = TemplateCase(name="template.json" if is_json else "template.txt", content=b"")
    instruction = _instruction(rng, case)
    if not is_json:
        text = rng.choice(["", "\n", "  "]) + instruction + rng.choice(["", "\n", " \n"])
        if instruction.strip():
            case.template = Template(instruction.strip())
    else:
        obj: dict[str, Any] = {"instruction": instruction}
        demos = [_demo(rng, case, k) for k in range(1, rng.randint(0, 3) + 1)]
        if demos or rng.random() < 0.2:
            obj["demos"] = demos if rng.random() > 0.05 else rng.choice([None, "x", {}, 3])
            if not isinstance(obj["demos"], list):
                case.errors[:] = [e for e in case.errors if e[0] != "demos"]
                if obj["demos"] is not None:
                    _bad(case, "demos", None, "demos not a list")
        for key in ("answer_prefix", "suffix"):
            if rng.random() < 0.3:
                obj[key] = rng.choice([words(rng), "[/x]", "{original_text}", 5, None, ["a"]])
                if not isinstance(obj[key], str):
                    _bad(case, key, None, f"{key} not a string")
        if rng.random() < 0.05:
            obj[rng.choice(["instrucion", "demo", "Suffix"])] = "x"
            _bad(case, None, None, "unknown key")
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
        roll = rng.random()
        if roll < 0.05:
            text = text[: rng.randint(0, len(text) - 1)]
            case.errors[:] = [(None, None)]
            case.defects.append("truncated JSON")
        elif roll < 0.09:
            text = json.dumps(rng.choice([[obj], instruction, 42, None]))
            case.errors[:] = [(None, None)]
            case.defects.append("not a JSON object")
        elif not case.errors:
            demos_ok = obj.get("demos") or []
            case.template = Template(instruction, tuple(make_demo(d) for d in demos_ok),
                                     obj.get("answer_prefix", ""), obj.get("suffix", ""))
    if case.errors:
        case.template = None
    if not is_json and case.template is None:
        case.errors = [("instruction", None), (None, None)]  # an empty file, or NUL
    _encode(case, rng, text)
    return case


def _encode(case: TemplateCase, rng: random.Random, text: str) -> None:
    choice = rng.choices(["utf-8", "bom", "utf-16", "latin-1", "utf-16 raw"],
                         [70, 8, 8, 8, 6])[0]
    if choice == "latin-1" and all(ord(c) < 256 for c in text):
        raw = text.encode("latin-1")
        if not text.isascii():  # no longer UTF-8
            case.template, case.errors = None, [(ANY, ANY)]
        case.defects.append("Latin-1 encoded")
    elif choice == "utf-16 raw" and text:
        raw = text.encode("utf-16-le")
        case.template, case.errors = None, [(ANY, ANY)]
        case.defects.append("UTF-16 without byte-order mark")
    else:
        bom = {"bom": codecs.BOM_UTF8, "utf-16": codecs.BOM_UTF16_LE}.get(choice, b"")
        raw = bom + text.encode("utf-16-le" if choice == "utf-16" else "utf-8")
        if bom:
            case.defects.append("UTF-8 byte-order mark" if choice == "bom"
                                else "UTF-16 with byte-order mark")
    case.content = raw


def _fill(text: str, values: dict[str, str]) -> str:
    """One-pass substitution, written independently of the task's."""
    parts = re.split(r"(\{original_text\}|\{rewritten_text\})", text)
    return "".join(values[p[1:-1]] if p in ("{original_text}", "{rewritten_text}") else p
                   for p in parts)


def check_template_case(case: TemplateCase, folder: Path) -> Outcome:
    """Write ``case`` into ``folder``, load it for prompt recovery, render it, judge."""
    from promptopt.tasks import PromptRecoveryTask

    path = folder / case.name
    path.write_bytes(case.content)
    task = PromptRecoveryTask(Splits([], [], []), scorer=None)
    try:
        template = task.load_template(str(path))
    except DataError as exc:
        if case.template is not None:
            return Outcome("wrong", f"error on a good template: {exc}")
        if str(path) not in str(exc):
            return Outcome("wrong", f"error does not name the file: {exc}")
        if not any((f is ANY or exc.field == f) and (r is ANY or exc.row == r)
                   for f, r in case.errors):
            return Outcome("wrong", f"error names field {exc.field!r} row {exc.row}; "
                           f"expected one of {case.errors}")
        return Outcome("error", str(exc))
    except Exception as exc:
        return Outcome("crash", f"{type(exc).__name__}: {exc}")
    if case.template is None:
        return Outcome("wrong", f"loaded despite {case.defects}")
    if template != case.template:
        return Outcome("wrong", f"loaded {template!r}, expected {case.template!r}")
    for example in EXAMPLES:
        try:
            chat = task.render(template, example, chat=True)
            task.render(template, example, chat=False)
        except Exception as exc:
            return Outcome("crash", f"render: {type(exc).__name__}: {exc}")
        want = _fill(template.instruction, example.inputs).strip()
        if chat[0]["content"] != want:
            return Outcome("wrong", f"rendered {chat[0]['content'][:80]!r}, expected {want[:80]!r}")
        shown = "\n".join(m["content"] for m in chat)
        if not all(v in shown for v in example.inputs.values()):
            return Outcome("wrong", "user text was not rendered verbatim")
    return Outcome("loaded")
