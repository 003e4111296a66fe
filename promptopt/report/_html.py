"""``promptopt report``: one self-contained HTML page per run or comparison, and a PNG of
each figure beside it.

For each study the page shows the run's settings and result (scores, gains over the
start with their intervals, why the start was kept), the best validation score so far
against LLM requests, the lineage tree with the rejected proposals per step, the start
and the returned template side by side with a word diff, both templates' test
predictions (worst first), usage and cost, and every trial of the study. With several
studies (a comparison) a summary table and one best-so-far figure with a line per run
come first. The figures are PNG files in the output folder, embedded in the page as
data URIs, so the page alone carries everything.
"""

from __future__ import annotations

import base64
import difflib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.comparison import best_so_far
from promptopt.redact import redact
from promptopt.report._lineage import Lineage, build_lineage, draw_lineage, rejected_per_step
from promptopt.report._read import StudyRecord, TrialRecord
from promptopt.scoring import GainInterval
from promptopt.tracking import display_url

CLIP = 400
"""Characters of an instruction, prediction or target shown in a table cell."""
SETTINGS_SHOWN = ("task", "data", "model", "proposer", "scorer", "budget", "seed", "splits",
                  "selection", "method_settings")
"""The stored run settings the page lists."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee}.pair{display:flex;gap:1em}
.pair>div{flex:1;background:#fafafa;border:1px solid #ddd;padding:.5em;white-space:pre-wrap}
del{background:#fdd;text-decoration:line-through}ins{background:#dfd;text-decoration:none}
.why{background:#fff6d6;padding:.5em;border-left:4px solid #e0b000}
.returned{background:#eef6ff}.muted{color:#777}
"""


@dataclass
class Report:
    """What :func:`write_report` wrote.

    Attributes:
        html: The page.
        figures: The PNG files, by name.
        lineages: Each study's lineage, by study name.
    """

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    lineages: dict[str, Lineage] = field(default_factory=dict)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: Any, limit: int = CLIP) -> str:
    flat = " ".join(str(text).split())
    return _e(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _num(value: Any, fmt: str = ".4f") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "",
           row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        klass = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td class="num">{c}</td>' if _is_number(c) else f"<td>{c}</td>"
                        for c in row)
        body.append(f"<tr{klass}>{cells}</tr>")
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?( \[[^\]]*\])?")


def _is_number(cell: str) -> bool:
    """Whether a cell holds a number (or a gain with its interval): right-aligned."""
    return _NUMBER.fullmatch(cell) is not None


def word_diff_html(old: str, new: str) -> str:
    """``new`` against ``old`` word by word: removed words in ``<del>``, added in ``<ins>``."""
    a, b = old.split(), new.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(_e(" ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{_e(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{_e(' '.join(b[j1:j2]))}</ins>")
    return " ".join(out)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _best_so_far_rows(study: StudyRecord) -> list[dict[str, Any]]:
    return [{"split": t.split, "constant": t.constant, "score": t.score,
             "cumulative_requests": t.requests_so_far}
            for t in study.trials if t.score is not None]


def draw_best_so_far(studies: Sequence[StudyRecord], path: Path) -> None:
    """Best validation score so far against the run's LLM requests, a line per study."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for k, study in enumerate(studies):
        curve = best_so_far(_best_so_far_rows(study))
        budget = study.settings.get("budget")
        if curve and isinstance(budget, int) and curve[-1][0] < budget:
            curve.append((budget, curve[-1][1]))
        if not curve:
            continue
        xs, ys = zip(*curve, strict=True)
        ax.step(xs, ys, where="post", marker=".", markersize=4, color=f"C{k % 10}",
                linestyle=("-", "--", ":")[k // 10 % 3],
                label=study.label if len(studies) > 1 else "best validation score so far")
        drawn += 1
        result = study.result or {}
        if len(studies) == 1 and isinstance(result.get("start_val_score"), (int, float)):
            ax.axhline(result["start_val_score"], color="gray", linestyle="--", linewidth=1,
                       label="start template (validation)")
    budgets = {float(b) for s in studies
               if isinstance(b := s.settings.get("budget"), (int, float))}
    if len(budgets) == 1:
        budget = budgets.pop()
        ax.axvline(budget, color="black", linewidth=0.8, alpha=0.6, label=f"budget ({budget:.0f})")
    ax.set_xlabel("LLM requests so far (proposer calls and cache hits included)")
    ax.set_ylabel("best validation score so far")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if drawn or budgets:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not drawn:
        ax.text(0.5, 0.5, "no validation score recorded", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _gain(value: Any) -> str:
    gain = GainInterval.from_dict(value) if isinstance(value, dict) else None
    return "-" if gain is None else _e(str(gain))


def _result_section(study: StudyRecord) -> str:
    result = study.result
    status = study.attrs.status or "unknown"
    if result is None:
        return (f"<p>The run has no result yet (status: <b>{_e(status)}</b>); the trials "
                "recorded so far are below.</p>")
    rows = [
        ["start template", _num(result.get("start_val_score")),
         _num(result.get("start_test_score")), "", ""],
        ["returned template", _num(result.get("val_score")), _num(result.get("test_score")),
         _gain(result.get("val_gain")), _gain(result.get("test_gain"))],
    ]
    out = [_table(["template", "validation", "test", "validation gain [interval]",
                   "test gain [interval]"], rows)]
    if result.get("why"):
        out.append(f'<p class="why">{_e(result["why"])}</p>')
    notes = [n for n in result.get("notes") or () if n != result.get("why")]
    if notes:
        out.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    out.append(f"<p class='muted'>status {_e(status)} · stopped: {_e(result.get('stopped'))} · "
               f"{_e(result.get('trials'))} trials · budget spent {_e(result.get('budget_spent'))}"
               f" of {_e(result.get('budget'))}</p>")
    return "\n".join(out)


def _template_block(template: dict[str, Any]) -> str:
    parts = [_e(template.get("instruction", ""))]
    demos = template.get("demos") or []
    if demos:
        parts.append(f"\n\n<b>{len(demos)} demos</b>")
        for k, demo in enumerate(demos, start=1):
            fields = "; ".join(f"{_e(n)}: {_clip(v, 160)}" for n, v in dict(demo).items())
            parts.append(f"\n{k}. {fields}")
    for key, label in (("answer_prefix", "answer prefix"), ("suffix", "suffix")):
        if template.get(key):
            parts.append(f"\n\n<b>{label}</b>: {_e(template[key])}")
    return "".join(parts)


def _templates_section(study: StudyRecord, lineage: Lineage) -> str:
    result = study.result or {}
    start, returned = result.get("start_template"), result.get("template")
    if not start or not returned:
        return "<p>No result: nothing to compare yet.</p>"
    head = (f"<div class='pair'><div><b>start</b> ({_e(lineage.number_of(study.start_id or ''))})"
            f"\n\n{_template_block(start)}</div><div><b>returned</b> "
            f"({_e(lineage.number_of(study.returned_id or ''))})\n\n"
            f"{_template_block(returned)}</div></div>")
    if start == returned:
        return head + "<p>The run returned its start template: no change.</p>"
    diff = word_diff_html(str(start.get("instruction", "")), str(returned.get("instruction", "")))
    extra = []
    if (start.get("demos") or []) != (returned.get("demos") or []):
        extra.append(f"demos: {len(start.get('demos') or [])} → "
                     f"{len(returned.get('demos') or [])}")
    return head + f"<p><b>Instruction, word diff</b>: {diff}</p>" + "".join(
        f"<p>{_e(x)}</p>" for x in extra)


def _predictions_section(study: StudyRecord) -> str:
    start_trial = study.final_test(study.start_id)
    best_trial = study.final_test(study.returned_id)
    if start_trial is None and best_trial is None:
        return "<p>No test evaluation recorded (the run had no test split or did not finish).</p>"
    start = {r["id"]: r for r in study.predictions(start_trial)} if start_trial else {}
    best = {r["id"]: r for r in study.predictions(best_trial)} if best_trial else {}
    same = study.start_id == study.returned_id
    ids = list(dict.fromkeys([*best, *start]))
    key = best if best else start
    ids.sort(key=lambda i: (key[i]["score"] if i in key else float("inf"), i))
    rows = []
    for i in ids:
        s, b = start.get(i), best.get(i)
        target = (b or s or {}).get("target", "")
        row = [_e(i), _clip(target)]
        if not same:
            row += [_clip(s["prediction"]) if s else "-", _num(s["score"]) if s else "-"]
        row += [_clip(b["prediction"]) if b else "-", _num(b["score"]) if b else "-"]
        if not same:
            row.append(_num(b["score"] - s["score"], "+.4f") if b and s else "-")
        rows.append(row)
    header = ["example", "target"]
    if not same:
        header += ["start prediction", "start score"]
    header += ["returned prediction", "returned score"]
    if not same:
        header.append("difference")
    n = len(ids)
    return (f"<p>{n} test examples, worst first by the returned template's score"
            f"{' (the start template)' if same else ''}.</p>" + _table(header, rows))


def _usage_section(study: StudyRecord) -> str:
    total: dict[str, float] = {}
    for trial in study.trials:
        for k, v in trial.usage.items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    result = study.result or {}
    run = result.get("usage") or {}
    keys = ("requests", "calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost")
    rows = [[k.replace("_", " "), _num(total.get(k), ".4f" if k == "cost" else ".0f"),
             _num(run.get(k), ".4f" if k == "cost" else ".0f")] for k in keys]
    rows.append(["wall time (s)", "-", _num(result.get("wall_time_s"), ".1f")])
    return _table(["", "evaluations (trials)", "whole run (proposer included)"], rows)


def _rejected_section(study: StudyRecord) -> str:
    rows = rejected_per_step(study)
    if not rows:
        return "<p>No proposal was rejected.</p>"
    reasons = sorted({r for _, found in rows for r in found})
    body = [[_e(label), *[str(found.get(r, 0)) for r in reasons], str(sum(found.values()))]
            for label, found in rows]
    return "<p>Rejected proposals (never evaluated), per step:</p>" + _table(
        ["step", *reasons, "total"], body)


def _duration(trial: TrialRecord) -> str:
    if trial.started is None or trial.finished is None:
        return "-"
    return f"{(trial.finished - trial.started).total_seconds():.2f}"


def _trials_section(study: StudyRecord, lineage: Lineage) -> str:
    rows, classes = [], []
    for t in study.trials:
        parents = ", ".join(lineage.number_of(p) for p in t.parents) or "-"
        rows.append([str(t.number), _e(t.state), _e(t.split), str(t.n_examples),
                     _num(t.score) if t.score is not None else _e(f"failed: {t.error}"[:120]),
                     _e(t.method), "-" if t.step is None else str(t.step),
                     _e(lineage.number_of(t.template_id)), _e(parents),
                     str(t.requests_so_far), _duration(t), _clip(t.instruction, 200)])
        classes.append("trial returned" if t.template_id == study.returned_id else "trial")
    return _table(["trial", "state", "split", "n", "score", "method", "step", "candidate",
                   "parents", "requests so far", "seconds", "instruction"], rows,
                  row_classes=classes)


def _nodes_section(lineage: Lineage) -> str:
    rows, classes = [], []
    for node in lineage.nodes.values():
        role = "returned" if node.returned else ("start" if node.start else "")
        rows.append([_e(lineage.number_of(node.template_id)), _e(role), str(node.depth),
                     _num(node.score), _e(node.score_split),
                     _e(", ".join(f"#{n}" for n in node.trials)),
                     _e(", ".join(lineage.number_of(p) for p in node.parents) or "-"),
                     _clip(node.instruction, 200)])
        classes.append("node returned" if node.returned else "node")
    note = (f"<p class='muted'>{len(lineage.nodes)} candidates, {len(lineage.edges)} parent "
            f"edges" + (f"; {lineage.dangling} recorded parents were never evaluated here"
                        if lineage.dangling else "") + ". A candidate is named by its first "
            "trial.</p>")
    return note + _table(["candidate", "role", "generation", "score", "split", "trials",
                          "parents", "instruction"], rows, row_classes=classes)


def _settings_section(study: StudyRecord) -> str:
    settings = study.settings
    rows = [[_e(k), _clip(redact(str(settings[k])), 300)] for k in SETTINGS_SHOWN
            if settings.get(k) not in (None, "", {}, [])]
    rows.insert(0, ["storage", _e(display_url(study.storage))])
    return _table(["setting", "value"], rows)


def _study_section(study: StudyRecord, folder: Path, report: Report) -> str:
    stem = _safe(study.name)
    lineage = build_lineage(study)
    report.lineages[study.name] = lineage
    curve = folder / f"{stem}-best_so_far.png"
    tree = folder / f"{stem}-lineage.png"
    draw_best_so_far([study], curve)
    draw_lineage(lineage, tree, title=f"{study.name}: {study.label}")
    report.figures[curve.name] = curve
    report.figures[tree.name] = tree
    parts = [
        f"<section id='{_e(stem)}'><h2>{_e(study.name)} · {_e(study.label)}</h2>",
        _settings_section(study),
        "<h3>Result</h3>", _result_section(study),
        "<h3>Best validation score so far</h3>", _image(curve, "best so far"),
        "<h3>Lineage</h3>",
        "<p class='muted'>Generations left to right; colour: the candidate's validation "
        "score, else its mean train score; square: the start; red star: the returned "
        "template.</p>", _image(tree, "lineage tree"), _rejected_section(study),
        _nodes_section(lineage),
        "<h3>Start and returned template</h3>", _templates_section(study, lineage),
        "<h3>Test predictions</h3>", _predictions_section(study),
        "<h3>Usage and cost</h3>", _usage_section(study),
        "<h3>Every trial</h3>", _trials_section(study, lineage), "</section>",
    ]
    return "\n".join(parts)


def _summary_section(studies: Sequence[StudyRecord], folder: Path, report: Report) -> str:
    rows = []
    for s in studies:
        r = s.result or {}
        usage = r.get("usage") or {}
        rows.append([f"<a href='#{_e(_safe(s.name))}'>{_e(s.name)}</a>", _e(s.method),
                     _e(s.settings.get("seed", "-")), _num(r.get("start_test_score")),
                     _num(r.get("test_score")), _gain(r.get("test_gain")),
                     _num(usage.get("requests"), ".0f"), _num(usage.get("cost"), ".4f"),
                     _e(s.attrs.status or "-")])
    curve = folder / "best_so_far.png"
    draw_best_so_far(studies, curve)
    report.figures[curve.name] = curve
    return ("<h2>Runs</h2>" + _table(["study", "method", "seed", "start test", "test",
                                      "test gain [interval]", "requests", "cost $", "status"],
                                     rows) + _image(curve, "best so far, every run"))


def write_report(studies: Sequence[StudyRecord], out_dir: str | Path) -> Report:
    """Write ``report.html`` and the figures' PNG files for ``studies`` into ``out_dir``.

    Args:
        studies: One run's study, or a comparison's (see :func:`read_study`).
        out_dir: The folder (created if missing).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(html=folder / "report.html")
    title = (studies[0].name if len(studies) == 1
             else f"{len(studies)} runs: " + ", ".join(s.name for s in studies[:4])
             + (", ..." if len(studies) > 4 else ""))
    body = [f"<h1>promptopt report · {_e(title)}</h1>"]
    if len(studies) > 1:
        body.append(_summary_section(studies, folder, report))
    body += [_study_section(s, folder, report) for s in studies]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>promptopt report: {_e(title)}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>")
    report.html.write_text(page, encoding="utf-8")
    return report
