"""``promptopt report`` on real studies written by fake-LLM runs: the page, the lineage
tree and the PNG figures."""

from __future__ import annotations

import html
import re

import optuna
import pytest
from typer.testing import CliRunner

from promptopt.cli import app
from promptopt.errors import ConfigError
from promptopt.report import build_lineage, read_study, rejected_per_step, write_report
from promptopt.runs import run
from promptopt.testing import FakeLLM, default_reply
from promptopt.tracking import evaluation_trials

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, method, study, *, budget=60, seed=0, replies=None, **kw):
    url = f"sqlite:///{tmp_path}/r.db"
    fake = FakeLLM(replies, name=f"report-{study}")
    result = run(method, model=fake.model, budget=budget, seed=seed, scorer="hashing", train=8,
                 val=4, test=4, storage=url, study=study, cache_dir=str(tmp_path / "cache"), **kw)
    return url, result


@pytest.fixture(scope="module")
def opro_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opro")
    url, result = _run(tmp, "opro", "opro-r")
    return tmp, url, result


def _trial_numbers(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="trial[^"]*"><td class="num">(\d+)</td>', page)]


def test_the_page_holds_every_trial_and_the_tree_one_node_per_candidate(opro_study):
    tmp, url, result = opro_study
    study = read_study(url, "opro-r")
    report = write_report([study], tmp / "out")
    page = report.html.read_text(encoding="utf-8")
    stored = evaluation_trials(optuna.load_study(study_name="opro-r", storage=url).trials,
                               failed=True)
    assert _trial_numbers(page) == [t.number for t in stored]
    candidates = {t.user_attrs["template_id"] for t in stored
                  if not t.user_attrs.get("meta", {}).get("constant")}
    lineage = report.lineages["opro-r"]
    assert set(lineage.nodes) == candidates
    assert page.count('<tr class="node') == len(candidates)
    recorded = {(p, t.user_attrs["template_id"]) for t in stored
                for p in t.user_attrs.get("parents", []) if p != t.user_attrs["template_id"]}
    assert set(lineage.edges) == {e for e in recorded if e[0] in candidates}
    assert len(lineage.edges) == len(set(lineage.edges)) >= 1
    for parent, child in lineage.edges:  # a child is a later generation than each parent
        assert lineage.nodes[child].depth > lineage.nodes[parent].depth
    assert sum(n.returned for n in lineage.nodes.values()) == 1
    assert lineage.nodes[result.template.id].returned
    assert html.escape(result.start_template.instruction) in page


def test_every_figure_is_a_valid_png_embedded_in_the_page(opro_study):
    tmp, url, _ = opro_study
    report = write_report([read_study(url, "opro-r")], tmp / "png")
    assert set(report.figures) == {"opro-r-best_so_far.png", "opro-r-lineage.png"}
    page = report.html.read_text(encoding="utf-8")
    for path in report.figures.values():
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 2000
        from matplotlib.image import imread  # decodes the whole file

        assert imread(path).shape[0] > 100
    assert page.count("data:image/png;base64,") == len(report.figures)
    assert "<script" not in page and "http://" not in page.replace(
        "http://www.w3.org", "")  # self-contained: nothing fetched


def _cells(section: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>")[1])
    return [[html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
            for r in rows]


def test_test_predictions_of_start_and_returned_worst_first_from_the_artifacts(tmp_path):
    # seed 24 of this fake finds a candidate credibly better than the start at confidence 0.5
    url, result = _run(tmp_path, "opro", "pred", seed=24, selection={"confidence": 0.5},
                       settings={"opening": False})
    assert result.template.id != result.start_template.id
    study = read_study(url, "pred")
    best, start = study.final_test(result.template.id), study.final_test(result.start_template.id)
    assert best is not None and best.artifact is not None  # read from the CSV artifact
    assert start is not None and start.artifact is not None
    rows = {r["id"]: r for r in study.predictions(best)}
    start_rows = {r["id"]: r for r in study.predictions(start)}
    assert len(rows) == len(start_rows) == 4
    page = write_report([study], tmp_path / "o").html.read_text(encoding="utf-8")
    section = page.split("<h3>Test predictions</h3>")[1].split("<h3>")[0]
    cells = _cells(section)
    assert [c[0] for c in cells] == sorted(rows, key=lambda i: (rows[i]["score"], i))
    for c in cells:  # example, target, start prediction/score, returned prediction/score, diff
        got, want = rows[c[0]], start_rows[c[0]]
        assert c[4] == " ".join(got["prediction"].split()) and float(c[5]) == pytest.approx(
            got["score"], abs=1e-4)
        assert c[2] == " ".join(want["prediction"].split()) and float(c[3]) == pytest.approx(
            want["score"], abs=1e-4)
    assert "<del>" in page or "<ins>" in page  # the instruction's word diff


def _repeating(prompt, params):
    """A proposer that keeps proposing one instruction (then duplicates), or nothing."""
    if "<INS>" in prompt:
        return ("<INS>Say which rewrite instruction was used.</INS>"
                if params.get("seed", 0) % 3 else "<INS></INS>")
    return default_reply(prompt, params)


def test_rejected_proposals_are_counted_per_step(tmp_path):
    url, result = _run(tmp_path, "opro", "rej", replies=_repeating, budget=50)
    assert result.rejected.get("duplicate", 0) >= 2
    assert result.rejected.get("no proposal in answer", 0) >= 1
    study = read_study(url, "rej")
    steps = rejected_per_step(study)
    assert len(steps) >= 2 and all(label.startswith("step ") for label, _ in steps[:-1])
    merged: dict[str, int] = {}
    for _, found in steps:
        assert found and all(v > 0 for v in found.values())
        for k, v in found.items():
            merged[k] = merged.get(k, 0) + v
    assert merged == result.rejected  # every rejection counted once, in its step
    page = write_report([study], tmp_path / "o").html.read_text(encoding="utf-8")
    assert "Rejected proposals" in page and "duplicate" in page


def test_a_comparison_report_has_a_summary_and_a_section_per_study(tmp_path):
    url, _ = _run(tmp_path, "opro", "cmp-opro-s0", budget=40)
    _run(tmp_path, "ape", "cmp-ape-s0", budget=40)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["report", "--prefix", "cmp", "--storage", url,
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Runs</h2>" in page
    assert "id='cmp-opro-s0'" in page and "id='cmp-ape-s0'" in page
    assert (out / "best_so_far.png").read_bytes().startswith(PNG)
    for name in ("cmp-opro-s0", "cmp-ape-s0"):
        assert (out / f"{name}-lineage.png").read_bytes().startswith(PNG)


def test_bad_names_give_clear_errors(tmp_path, opro_study):
    _, url, _ = opro_study
    res = CliRunner().invoke(app, ["report", "--study", "nope", "--storage", url])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(app, ["report", "--prefix", "zzz", "--storage", url])
    assert res.exit_code == 2 and "opro-r" in res.output  # lists what the storage holds
    res = CliRunner().invoke(app, ["report", "--storage", url])
    assert res.exit_code == 2 and "--study" in res.output
    optuna.create_study(study_name="plain", storage=url)
    with pytest.raises(ConfigError, match="holds no promptopt run"):
        read_study(url, "plain")


def test_a_lineage_from_a_study_without_parents_has_no_edges(tmp_path):
    url, _ = _run(tmp_path, "mean-prompt", "mp", budget=30)
    lineage = build_lineage(read_study(url, "mp"))
    assert lineage.edges == [] or all(p in lineage.nodes for p, _ in lineage.edges)


def _methods():
    import promptopt.optimizers  # noqa: F401
    from promptopt.registry import optimizers

    return optimizers.names()


@pytest.mark.parametrize("method", _methods())
def test_every_method_gets_a_report(tmp_path, method):
    url, result = _run(tmp_path, method, f"m-{method}", budget=40)
    study = read_study(url, f"m-{method}")
    report = write_report([study], tmp_path / "o")
    page = report.html.read_text(encoding="utf-8")
    assert len(_trial_numbers(page)) == len(study.trials) >= 2
    lineage = report.lineages[f"m-{method}"]
    assert lineage.nodes[result.template.id].returned
    assert all(p.read_bytes().startswith(PNG) for p in report.figures.values())
