"""The lineage of a search: every candidate template, the parents it was made from,
and the proposals rejected at each step.

A node is a template the study evaluated (constant predictions are not candidates);
an edge goes from each recorded parent to its child, once per (parent, child) pair. A
recorded parent the study never evaluated has no node: it is counted in
:attr:`Lineage.dangling`. A node's depth is its generation (a root is 0, a child one
more than its deepest parent); its score, which colours it, is its validation score
when the candidate was validated, else the mean of its train evaluations (weighted by
their examples), else its test score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from promptopt.report._read import StudyRecord, TrialRecord


@dataclass
class Node:
    """One candidate template.

    Attributes:
        template_id: Its id.
        instruction: Its instruction.
        trials: The numbers of the trials that evaluated it.
        parents: Its parents' ids that have nodes, first recorded first.
        score: The score that colours it (None: every evaluation failed).
        score_split: The split of that score (``val``, ``train`` or ``test``).
        depth: Its generation.
        start: Whether it is the starting template.
        returned: Whether it is the template the run returned.
    """

    template_id: str
    instruction: str
    trials: list[int] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    score: float | None = None
    score_split: str = ""
    depth: int = 0
    start: bool = False
    returned: bool = False


@dataclass
class Lineage:
    """The candidates of one study and their parent edges.

    Attributes:
        nodes: By template id, in the order of their first trial.
        edges: ``(parent id, child id)`` pairs, one per recorded parent with a node.
        dangling: Recorded parents that the study never evaluated.
    """

    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    dangling: int = 0

    def number_of(self, template_id: str) -> str:
        """How the report names a candidate: its first trial's number (``#12``)."""
        node = self.nodes.get(template_id)
        return f"#{node.trials[0]}" if node and node.trials else template_id[:10]


def _node_score(evaluations: Sequence[TrialRecord]) -> tuple[float | None, str]:
    for split in ("val", "train", "test"):
        done = [t for t in evaluations if t.split == split and t.score is not None]
        if not done:
            continue
        if split == "val":  # the largest validation scoring is the most reliable one
            best = max(done, key=lambda t: (t.n_examples, t.number))
            return float(best.score), split  # type: ignore[arg-type]
        weight = sum(max(t.n_examples, 1) for t in done)
        total = sum(float(t.score or 0.0) * max(t.n_examples, 1) for t in done)
        return total / weight, split
    return None, ""


def build_lineage(study: StudyRecord) -> Lineage:
    """The lineage of ``study``'s candidates (see the module)."""
    by_id: dict[str, list[TrialRecord]] = {}
    for trial in study.trials:
        if not trial.constant and trial.template_id:
            by_id.setdefault(trial.template_id, []).append(trial)
    nodes: dict[str, Node] = {}
    for template_id, trials in by_id.items():
        score, split = _node_score(trials)
        nodes[template_id] = Node(
            template_id=template_id, instruction=trials[0].instruction,
            trials=[t.number for t in trials], score=score, score_split=split,
            start=template_id == study.start_id, returned=template_id == study.returned_id,
        )
    edges: list[tuple[str, str]] = []
    dangling: set[str] = set()
    for template_id, trials in by_id.items():
        for trial in trials:
            for parent in trial.parents:
                if parent == template_id:
                    continue
                if parent not in nodes:
                    dangling.add(parent)
                elif parent not in nodes[template_id].parents:
                    nodes[template_id].parents.append(parent)
                    edges.append((parent, template_id))
    _set_depths(nodes)
    return Lineage(nodes=nodes, edges=edges, dangling=len(dangling))


def _set_depths(nodes: dict[str, Node]) -> None:
    depth: dict[str, int] = {}

    def visit(template_id: str, open_: set[str]) -> int:
        if template_id in depth:
            return depth[template_id]
        open_.add(template_id)
        parents = [p for p in nodes[template_id].parents if p not in open_]
        value = 1 + max((visit(p, open_) for p in parents), default=-1)
        open_.discard(template_id)
        depth[template_id] = value
        return value

    for template_id in nodes:
        nodes[template_id].depth = visit(template_id, set())


def rejected_per_step(study: StudyRecord) -> list[tuple[str, dict[str, int]]]:
    """Rejected proposals by reason, per search step.

    Each trial records the run's rejections so far; a step's rejections are the count at
    its last trial less the count at the previous step's last trial. Rejections after
    the last trial (and all of them in studies recorded without the counts) come from
    the run's result, as a last row ``after the last trial`` (``whole run``).
    """
    rows: list[tuple[str, dict[str, int]]] = []
    last: dict[str, int] = {}
    order: list[str] = []
    at_end: dict[str, dict[str, int]] = {}
    for trial in study.trials:
        if not trial.rejected_so_far and not last:
            continue
        label = "-" if trial.step is None else f"step {trial.step}"
        if label not in at_end:
            order.append(label)
        at_end[label] = trial.rejected_so_far
        last = trial.rejected_so_far
    before: dict[str, int] = {}
    for label in order:
        now = at_end[label]
        diff = {k: now.get(k, 0) - before.get(k, 0) for k in now}
        diff = {k: v for k, v in diff.items() if v > 0}
        if diff:
            rows.append((label, diff))
        before = {k: max(v, before.get(k, 0)) for k, v in now.items()}
    total = {str(k): int(v) for k, v in ((study.result or {}).get("rejected") or {}).items()}
    rest = {k: v - before.get(k, 0) for k, v in total.items() if v - before.get(k, 0) > 0}
    if rest:
        rows.append(("after the last trial" if before else "whole run", rest))
    return rows


def draw_lineage(lineage: Lineage, path: Path, *, title: str = "") -> None:
    """The lineage as a PNG: generations left to right, each column best first; nodes
    coloured by score, the start a square, the returned template a star with a red rim,
    edges grey from parent to child."""
    from matplotlib import cm, colormaps, colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns: dict[int, list[Node]] = {}
    for node in lineage.nodes.values():
        columns.setdefault(node.depth, []).append(node)
    tallest = max((len(c) for c in columns.values()), default=1)
    width = max(6.0, 1.4 * len(columns) + 3)
    fig = Figure(figsize=(width, max(3.5, min(14.0, 0.28 * tallest + 2))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    place: dict[str, tuple[float, float]] = {}
    for depth, column in columns.items():
        column.sort(key=lambda n: -(n.score if n.score is not None else float("-inf")))
        for k, node in enumerate(column):
            y = 0.5 if len(column) == 1 else 1 - k / (len(column) - 1)
            place[node.template_id] = (float(depth), y)
    for parent, child in lineage.edges:
        (x0, y0), (x1, y1) = place[parent], place[child]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1,
                    arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.7,
                                "shrinkA": 5, "shrinkB": 5})
    scores = [n.score for n in lineage.nodes.values() if n.score is not None]
    norm = colors.Normalize(min(scores, default=0.0), max(scores, default=1.0) or 1.0)
    cmap = colormaps["viridis"]
    for node in lineage.nodes.values():
        x, y = place[node.template_id]
        color = "0.85" if node.score is None else cmap(norm(node.score))
        marker, size, edge = ("*", 260, "red") if node.returned else (
            ("s", 90, "black") if node.start else ("o", 60, "0.3"))
        ax.scatter([x], [y], s=size, marker=marker, c=[color], edgecolors=edge,
                   linewidths=1.2 if node.returned or node.start else 0.5, zorder=2)
        if node.returned or node.start or len(lineage.nodes) <= 30:
            ax.annotate(lineage.number_of(node.template_id), (x, y), xytext=(6, 3),
                        textcoords="offset points", fontsize=7)
    mappable = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="score (validation, else mean train)")
    ax.set_xticks(sorted(columns))
    ax.set_xlabel("generation (parent → child)")
    ax.set_yticks([])
    ax.set_xlim(-0.5, max(columns, default=0) + 0.5)
    ax.set_ylim(-0.1, 1.1)
    ax.set_title(title or "lineage", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
