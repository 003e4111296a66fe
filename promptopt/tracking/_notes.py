"""The Markdown note each evaluation's trial carries in optuna-dashboard.

:func:`render_note` writes what a user needs to judge a candidate without reading
JSON: the template (instruction, demos, answer prefix, suffix), its parents as the
study's trial numbers, a word diff from the first parent, the split and number of
examples, and a few predictions beside their targets with their scores (the worst and
the best). :func:`save_trial_note` stores it with optuna-dashboard's ``save_note``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SHOWN_EACH_WAY = 3
"""Predictions shown from each end: the worst and the best by score."""
CLIP = 300
"""Characters of a prediction, target or demo shown in the note."""
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~])")


@dataclass(frozen=True)
class Parent:
    """A parent template as the note shows it.

    Attributes:
        template_id: Its id.
        numbers: The numbers of the study's trials that evaluated it (oldest first).
        template: Its template as JSON (None: not in the study).
    """

    template_id: str
    numbers: tuple[int, ...] = ()
    template: Mapping[str, Any] | None = field(default=None)


def escape(text: str) -> str:
    """``text`` shown literally in Markdown (punctuation escaped, lines kept)."""
    return "  \n".join(_SPECIAL.sub(r"\\\1", line) for line in str(text).split("\n"))


def _cell(text: Any) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > CLIP:
        flat = flat[: CLIP - 1] + "…"
    return _SPECIAL.sub(r"\\\1", flat) or " "


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in escape(text).split("\n"))


def word_diff(old: str, new: str) -> str:
    """A Markdown word diff: removed words struck through, added words in bold."""
    a, b = old.split(), new.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(f"~~{_cell(' '.join(a[i1:i2]))}~~")
        if op in ("insert", "replace"):
            out.append(f"**{_cell(' '.join(b[j1:j2]))}**")
        if op == "equal":
            out.append(escape(" ".join(a[i1:i2])))
    return " ".join(out)


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines = []
    if old.get("instruction", "") != new.get("instruction", ""):
        lines.append(word_diff(str(old.get("instruction", "")), str(new.get("instruction", ""))))
    for key, label in (("answer_prefix", "answer prefix"), ("suffix", "suffix")):
        if old.get(key, "") != new.get(key, ""):
            lines.append(f"{label}: `{_cell(old.get(key, '')) or ' '}` → "
                         f"`{_cell(new.get(key, '')) or ' '}`")
    if (old.get("demos") or []) != (new.get("demos") or []):
        lines.append(f"demos: {len(old.get('demos') or [])} → {len(new.get('demos') or [])}")
    return lines or ["(no change)"]


def _template(template: Mapping[str, Any]) -> list[str]:
    lines = ["**Instruction**", "", _quote(str(template.get("instruction", ""))), ""]
    demos = template.get("demos") or []
    if demos:
        lines.append(f"**Demos** ({len(demos)})")
        lines.append("")
        for k, demo in enumerate(demos, start=1):
            fields = "; ".join(f"{name}: {_cell(value)}" for name, value in dict(demo).items())
            lines.append(f"{k}. {fields}")
        lines.append("")
    parts = [f"{label}: `{template.get(key)}`" for key, label in
             (("answer_prefix", "Answer prefix"), ("suffix", "Suffix")) if template.get(key)]
    if parts:
        lines += [" · ".join(parts), ""]
    return lines


def _parents(parents: Sequence[Parent]) -> list[str]:
    if not parents:
        return []
    shown = []
    for p in parents:
        if p.numbers:
            shown.append(f"trial {', '.join(f'#{n}' for n in p.numbers)} "
                         f"(template `{p.template_id[:12]}`)")
        else:
            shown.append(f"(template `{p.template_id[:12]}`, not evaluated in this study)")
    lines = ["**Parents**: " + "; ".join(shown), ""]
    return lines


def _predictions(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    scored = [r for r in rows if isinstance(r.get("score"), (int, float))]
    if not scored:
        return []
    order = sorted(range(len(scored)), key=lambda i: (scored[i]["score"], i))
    if len(order) > 2 * SHOWN_EACH_WAY:
        order = order[:SHOWN_EACH_WAY] + order[-SHOWN_EACH_WAY:]
        title = (f"**Predictions**: the {SHOWN_EACH_WAY} worst and {SHOWN_EACH_WAY} best "
                 f"of {len(scored)}")
    else:
        title = f"**Predictions**: all {len(scored)}, worst first"
    lines = [title, "", "| example | score | prediction | target |", "|---|---:|---|---|"]
    for i in order:
        r = scored[i]
        lines.append(f"| {_cell(r.get('id', ''))} | {float(r['score']):.4f} | "
                     f"{_cell(r.get('prediction', ''))} | {_cell(r.get('target', ''))} |")
    return lines + [""]


def render_note(
    attrs: Mapping[str, Any],
    value: float | None,
    *,
    parents: Sequence[Parent] = (),
    rows: Sequence[Mapping[str, Any]] = (),
    objective: bool = False,
) -> str:
    """The Markdown note of one evaluation's trial.

    Args:
        attrs: The trial's attributes as the evaluator writes them.
        value: Its score (None: a failed evaluation).
        parents: Its parents, in the order the evaluation names them.
        rows: Every example's ``id``, ``prediction``, ``target`` and ``score``.
        objective: Whether the trial is the study's objective (a validation score).
    """
    template = attrs.get("template") or {"instruction": attrs.get("instruction", "")}
    meta = attrs.get("meta") or {}
    head = [f"{attrs.get('method') or 'evaluation'}", f"{attrs.get('split')} split",
            f"{attrs.get('n_examples')} examples"]
    head += [f"{k} {meta[k]}" for k in ("step", "role", "kind", "op") if meta.get(k) is not None]
    if value is None:
        score = "failed"
    else:
        score = f"score {value:.4f}" + (" (the study's objective)" if objective else
                                        " (not the objective: only validation scores are)")
    lines = [f"### {escape(' · '.join(str(h) for h in head))}", "", f"**{score}** · "
             f"template `{str(attrs.get('template_id', ''))[:12]}` · scorer "
             f"`{attrs.get('scorer', '')}`", ""]
    if attrs.get("error"):
        lines += [f"**Error**: {_cell(attrs['error'])}", ""]
    lines += _template(template)
    lines += _parents(parents)
    first = parents[0] if parents else None
    if first is not None and first.template is not None:
        lines += [f"**Changed from the first parent** (`{first.template_id[:12]}`)", ""]
        lines += [f"- {line}" for line in _changes(first.template, template)] + [""]
    lines += _predictions(rows)
    return "\n".join(lines).rstrip() + "\n"


def save_trial_note(study: Any, trial_id: int, body: str) -> None:
    """Store ``body`` as the note of trial ``trial_id`` of ``study`` (optuna-dashboard's
    ``save_note``; the trial may be finished)."""
    from optuna.trial import Trial
    from optuna_dashboard import save_note

    save_note(Trial(study, trial_id), body)
