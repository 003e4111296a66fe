"""The :class:`Template`: the thing every optimizer searches over.

A template is an immutable value: an instruction, optional few-shot demos, an
optional answer prefix (what the model's answer starts with) and an optional fixed
suffix (appended to every prediction, e.g. a learned mean-prompt string). Its id is
a stable hash of its content, so the same template found by two methods or two
workers is the same trial lineage and the same cache entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.data import clip, decode_text
from promptopt.errors import DataError

Demo = tuple[tuple[str, str], ...]
"""One few-shot demo: ``(field, value)`` pairs, inputs first and the target last."""


def make_demo(fields: Mapping[str, str]) -> Demo:
    """Freeze a mapping of field values into a hashable demo."""
    return tuple((str(k), str(v)) for k, v in fields.items())


@dataclass(frozen=True)
class Template:
    """An instruction template.

    Attributes:
        instruction: The instruction text. It may contain the task's input
            placeholders (e.g. ``{original_text}``); otherwise the task appends the
            inputs in its standard layout.
        demos: Few-shot demos, each a tuple of ``(field, value)`` pairs.
        answer_prefix: Text the answer starts with (rendered after the task's
            answer cue, kept in the prediction).
        suffix: A fixed string appended to every prediction.
    """

    instruction: str
    demos: tuple[Demo, ...] = field(default=())
    answer_prefix: str = ""
    suffix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str):
            raise TypeError("Template.instruction must be a string")
        object.__setattr__(self, "demos", tuple(tuple(map(tuple, d)) for d in self.demos))

    @property
    def id(self) -> str:
        """A stable 12-hex-digit content hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form stored on trials and in template files)."""
        return {
            "instruction": self.instruction,
            "demos": [dict(d) for d in self.demos],
            "answer_prefix": self.answer_prefix,
            "suffix": self.suffix,
        }

    def to_json(self) -> str:
        """Serialize to a JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<template>") -> Template:
        """Build a template from :meth:`to_dict` output, with clear errors.

        Demos are numbered from 1 in errors (``row``); every value must be text.
        """
        if not isinstance(data, Mapping):
            raise DataError(
                f"a template must be a JSON object, got {type(data).__name__}", path=source
            )
        unknown = set(data) - {"instruction", "demos", "answer_prefix", "suffix"}
        if unknown:
            raise DataError(f"unknown template keys {clip(sorted(map(str, unknown)))}; "
                            "use instruction, demos, answer_prefix, suffix", path=source)
        instruction = data.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError("must be a non-empty string", path=source, field="instruction")
        _check_text(instruction, source, "instruction")
        demos_raw = data.get("demos")
        if demos_raw is None:
            demos_raw = []
        if not isinstance(demos_raw, list):
            raise DataError("must be a list of objects", path=source, field="demos")
        demos = []
        for i, d in enumerate(demos_raw, start=1):
            if not isinstance(d, Mapping) or not all(isinstance(v, str) for v in d.values()):
                raise DataError(
                    "each demo must map field names to strings", path=source, row=i, field="demos"
                )
            for value in d.values():
                _check_text(value, source, "demos", row=i)
            demos.append(make_demo(d))
        for key in ("answer_prefix", "suffix"):
            if not isinstance(data.get(key, ""), str):
                raise DataError("must be a string", path=source, field=key)
            _check_text(data.get(key, ""), source, key)
        return cls(
            instruction=instruction,
            demos=tuple(demos),
            answer_prefix=data.get("answer_prefix", ""),
            suffix=data.get("suffix", ""),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "<template>") -> Template:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=source,
                            line=exc.lineno) from None
        except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
            raise DataError(f"unreadable JSON: {clip(str(exc), 100)}", path=source) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, spec: str) -> Template:
        """Load a template from a ``.json`` file, a text file, or a literal string.

        A path ending in ``.json`` is parsed as a template object; any other existing
        file is read as the instruction text (UTF-8, or UTF-16/32 with a byte-order
        mark); anything else is the instruction itself.
        """
        path = Path(spec)
        try:
            is_file = path.is_file()
        except (OSError, ValueError):  # a long literal, or one with a NUL character
            is_file = False
        if not is_file:
            if spec.strip().lower().endswith((".json", ".txt")) and "\n" not in spec:
                raise DataError("template file not found", path=spec)
            if not spec.strip():
                raise DataError("the template is empty", field="instruction")
            _check_text(spec, None, "instruction")
            return cls(instruction=spec)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read the file: {exc.strerror or exc}", path=spec) from None
        text = decode_text(raw, spec)
        if path.suffix.lower() == ".json":
            return cls.from_json(text, source=spec)
        if not text.strip():
            raise DataError("template file is empty", path=spec, field="instruction")
        _check_text(text, spec, "instruction")
        return cls(instruction=text.strip())

    def replace(self, **changes: Any) -> Template:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_demos(self, demos: Iterable[Mapping[str, str]]) -> Template:
        """A copy with these demos."""
        return self.replace(demos=tuple(make_demo(d) for d in demos))


def _check_text(value: str, source: str | None, field: str, row: int | None = None) -> None:
    """Reject text no LLM request or storage can carry (NUL, lone surrogates)."""
    problem = None
    if "\x00" in value:
        problem = f"NUL character at position {value.index(chr(0))}"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            problem = f"not valid Unicode: a lone surrogate at position {exc.start}"
    if problem:
        raise DataError(problem, path=source, row=row, field=field)
