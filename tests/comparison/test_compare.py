"""``promptopt compare`` and :func:`promptopt.compare`, on the fake LLM and the hashing scorer."""

from __future__ import annotations

import csv
import math
import shlex

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

import promptopt.cli as cli
import promptopt.comparison._compare as comparison
from promptopt import compare
from promptopt.comparison import FIXED_PREDICTION, TABLE_COLUMNS, best_so_far, curve_band
from promptopt.errors import ConfigError
from promptopt.optimizers import optimizers, search_mean_prompt
from promptopt.runs import make_task
from promptopt.scoring import HashingScorer
from promptopt.testing import FakeLLM, default_reply

runner = CliRunner()
SPLITS = dict(train=8, val=4, test=4)
SMALL = ["--train", "8", "--val", "4", "--test", "4", "--scorer", "hashing"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _studies(url, prefix, methods, seeds):
    return {
        (m, s): optuna.load_study(study_name=f"{prefix}-{m}-s{s}", storage=url)
        for m in methods for s in seeds
    }


def _read_csv(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _check_files_match_studies(folder, studies):
    """trials.csv holds every trial of every study, in order, with the stored numbers."""
    rows = _read_csv(folder / "trials.csv")
    assert list(rows[0]) == list(comparison_report_columns())
    expected = []
    for (method, seed), study in studies.items():
        for t in sorted(study.trials, key=lambda t: t.number):
            expected.append((method, str(seed), study.study_name, str(t.number),
                             t.user_attrs["split"], float(t.value),
                             t.user_attrs["usage"]["requests"], t.user_attrs["requests_so_far"],
                             t.user_attrs["template_id"], t.user_attrs["instruction"]))
    got = [(r["method"], r["seed"], r["study"], r["trial"], r["split"], float(r["score"]),
            int(r["requests"]), int(r["cumulative_requests"]), r["template_id"],
            r["instruction"]) for r in rows]
    assert got == expected
    for study in studies.values():
        result = study.user_attrs["result"]
        # The last trial's running total is every request of the run.
        assert study.trials[-1].user_attrs["requests_so_far"] == result["usage"]["requests"]


def comparison_report_columns():
    from promptopt.comparison import TRIAL_COLUMNS

    return TRIAL_COLUMNS


def _check_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_library_compare_table_and_files_match_the_studies(tmp_path, monkeypatch):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    scorers = []
    real_execute = comparison.execute

    def spy_execute(spec, live, **kwargs):
        scorers.append(live.scorer)
        return real_execute(spec, live, **kwargs)

    monkeypatch.setattr(comparison, "execute", spy_execute)
    res = compare(["identity", "random"], seeds=(0, 1), model=fake.model, scorer="hashing",
                  budget=60, storage=url, prefix="cmp", out_dir=tmp_path / "out", **SPLITS)
    # One scorer object serves every run.
    assert len(scorers) == 4 and all(s is scorers[0] for s in scorers)
    assert not isinstance(scorers[0], str)
    studies = _studies(url, "cmp", ["identity", "random"], [0, 1])
    assert [r.study for r in res.runs] == [s.study_name for s in studies.values()]

    # Method rows: mean and sample sd over seeds of what the studies hold.
    for method in ("identity", "random"):
        stored = [studies[(method, s)].user_attrs["result"] for s in (0, 1)]
        row = res.row(method)
        assert row.val.values == tuple(r["val_score"] for r in stored)
        assert row.test.values == tuple(r["test_score"] for r in stored)
        assert row.start_val.values == tuple(r["start_val_score"] for r in stored)
        assert row.requests.values == tuple(r["usage"]["requests"] for r in stored)
        vals = [r["val_score"] for r in stored]
        assert row.val.mean == pytest.approx(np.mean(vals))
        assert row.val.sd == pytest.approx(np.std(vals, ddof=1))
        # The returned template's validation score is its validation trial's: the best
        # one's only when its gain over the start is credible, else the start's.
        for s in (0, 1):
            study = studies[(method, s)]
            val_trials = [t.value for t in study.trials if t.user_attrs["split"] == "val"]
            by_id = {t.user_attrs["template_id"]: t.value for t in study.trials
                     if t.user_attrs["split"] == "val"}
            assert stored[s]["val_score"] == by_id[stored[s]["template_id"]]
            gain = stored[s]["val_gain"]
            if stored[s]["template"] == stored[s]["start_template"]:  # the start was kept
                assert gain["gain"] == 0.0 and (stored[s]["why"] or method == "identity")
            else:
                assert gain["low"] > 0 and stored[s]["val_score"] == max(val_trials)
            assert row.val_gains[s] is not None and row.test_gains[s] is not None
            curve = best_so_far([t for t in res.trials
                                 if t["method"] == method and t["seed"] == s])
            assert curve[-1][1] == max(val_trials)
    assert res.row("random").requests.mean > res.row("identity").requests.mean

    # Constant baselines on the same splits, with the same scorer.
    task = make_task(scorer=HashingScorer(), **SPLITS)

    def constant(text, split):
        examples = task.examples(split)
        return float(np.mean(task.score([text] * len(examples), examples)))

    fixed = res.row(f'constant "{FIXED_PREDICTION}"')
    assert fixed.val.mean == pytest.approx(constant(FIXED_PREDICTION, "val"))
    assert fixed.test.mean == pytest.approx(constant(FIXED_PREDICTION, "test"))
    learned = search_mean_prompt(task.scorer, [e.target for e in task.examples("train")])
    assert res.mean_prompt_texts[0] == learned.text
    assert res.row("mean-prompt string alone").val.values[0] == pytest.approx(
        constant(learned.text, "val"))
    start = res.row("start template")
    assert start.val.values == tuple(r.start_val_score for r in res.runs)
    assert start.requests is None and start.cells()[5] == "-"

    # Files: CSV = the studies' trials, report = the table, PNG valid.
    folder = tmp_path / "out"
    assert res.files == {"trials": folder / "trials.csv", "plot": folder / "best_so_far.png",
                         "report": folder / "report.md"}
    _check_files_match_studies(folder, studies)
    _check_png(folder / "best_so_far.png")
    report = (folder / "report.md").read_text()
    assert "| " + " | ".join(TABLE_COLUMNS) + " |" in report
    for cells in res.table():
        assert "| " + " | ".join(cells) + " |" in report
    assert "](best_so_far.png)" in report and "trials.csv" in report
    assert "cmp-<method>-s<seed>" in report and fake.model in report


def test_cli_compare_prints_the_table_and_writes_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.out, "_width", 250)  # keep each table row on one line
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    out = tmp_path / "cmp-out"
    result = runner.invoke(cli.app, ["compare", "--methods", "identity,random", "--seeds", "0,1",
                                     "--model", fake.model, "--budget", "60", "--storage", url,
                                     "--prefix", "c", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    studies = _studies(url, "c", ["identity", "random"], [0, 1])
    lines = result.stdout.splitlines()
    for method in ("identity", "random"):
        vals = [studies[(method, s)].user_attrs["result"]["val_score"] for s in (0, 1)]
        tests = [studies[(method, s)].user_attrs["result"]["test_score"] for s in (0, 1)]
        line = next(x for x in lines if f" {method} " in x)
        assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}" in line
        assert f"{np.mean(tests):.4f} ± {np.std(tests, ddof=1):.4f}" in line
    for label in ("start template", FIXED_PREDICTION, "mean-prompt string alone", "LLM calls",
                  "wall s"):
        assert label in result.stdout
    assert "c-<method>-s<seed>" in result.stdout
    assert {p.name for p in out.iterdir()} == {"report.md", "best_so_far.png", "trials.csv"}
    _check_files_match_studies(out, studies)
    _check_png(out / "best_so_far.png")


def test_cli_compare_defaults_to_every_registered_method(tmp_path):
    fake = FakeLLM()
    url = f"sqlite:///{tmp_path}/p.db"
    result = runner.invoke(cli.app, ["compare", "--model", fake.model, "--budget", "40",
                                     "--storage", url, "--prefix", "all", *SMALL])
    assert result.exit_code == 0, result.output
    names = optimizers.names()
    assert len(names) >= 10 and {"opro", "ape", "mean-prompt", "identity"} <= set(names)
    rows = _read_csv(tmp_path / "all" / "trials.csv")  # --out defaults to the prefix
    assert {r["method"] for r in rows} == set(names)
    assert {r["seed"] for r in rows} == {"0"}
    stored = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert stored == {f"all-{m}-s0" for m in names}
    # The x-axis counts proposer calls too: OPRO's running total exceeds its evaluations'.
    opro = [r for r in rows if r["method"] == "opro"]
    assert int(opro[-1]["cumulative_requests"]) > sum(int(r["requests"]) for r in opro)
    again = runner.invoke(cli.app, ["compare", "--methods", "identity", "--model", fake.model,
                                    "--storage", url, "--prefix", "all", *SMALL])
    assert again.exit_code == 2 and "'all-identity-s0' already exists" in again.output


def test_unknown_method_lists_the_valid_ones(tmp_path):
    result = runner.invoke(cli.app, ["compare", "--methods", "identity,nope", *SMALL,
                                     "--storage", f"sqlite:///{tmp_path}/p.db"])
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.output and "identity, mean-prompt" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("compare-*"))  # nothing ran, nothing written


@pytest.mark.parametrize("seeds", ["a,b", ","])
def test_bad_seeds_are_a_usage_error(seeds):
    result = runner.invoke(cli.app, ["compare", "--methods", "identity", "--seeds", seeds, *SMALL])
    assert result.exit_code == 2 and "--seeds" in result.output


def test_curve_band_holds_each_run_and_averages_those_with_a_score():
    a = [(10, 0.2), (20, 0.5)]
    b = [(15, 0.4)]
    xs, mean, low, high = curve_band([a, b, []])
    assert list(xs) == [10, 15, 20]
    assert list(mean) == pytest.approx([0.2, 0.3, 0.45])
    assert list(low) == [0.2, 0.2, 0.4] and list(high) == [0.2, 0.4, 0.5]
    empty = curve_band([[], []])
    assert all(arr.size == 0 for arr in empty)


def test_best_so_far_skips_train_constant_and_test_trials():
    def t(split, score, n, constant=False):
        return {"split": split, "score": score, "cumulative_requests": n, "constant": constant}

    trials = [t("train", 0.9, 8), t("val", 0.9, 8, constant=True), t("val", 0.3, 12),
              t("val", 0.2, 16), t("val", 0.6, 20), t("test", 0.99, 24)]
    assert best_so_far(trials) == [(12, 0.3), (16, 0.3), (20, 0.6)]  # test: after the run
    assert math.isnan(comparison.Stat(()).mean) and comparison.Stat((0.5,)).sd == 0.0


class _CutAt:
    """A FakeLLM reply that raises ``error`` at call ``at`` (counting from 1), until healed."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.at, self.calls = error, None, 0

    def __call__(self, prompt, params):
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            raise self.error
        return default_reply(prompt, params)


def _comparable(res):
    """A comparison's table and per-study trials, without what an interruption changes."""
    rows = [(r.name, r.val.values, r.test.values,
             r.requests.values if r.requests else None) for r in res.rows]
    trials = [{k: v for k, v in t.items() if k != "study"} for t in res.trials]
    return rows, trials


def test_an_interrupted_comparison_resumes_to_the_uninterrupted_result(tmp_path):
    cut = _CutAt(KeyboardInterrupt())
    fake = FakeLLM(cut, name="compare-resume")
    url = f"sqlite:///{tmp_path}/p.db"
    kw = dict(seeds=(0, 1), model=fake.model, scorer="hashing", budget=40, storage=url,
              **SPLITS)
    methods = ["random", "opro"]
    ref = compare(methods, prefix="ref", out_dir=tmp_path / "ref",
                  cache_dir=str(tmp_path / "ref-cache"), **kw)
    total = cut.calls
    first_two = sum(r.usage["calls"] for r in ref.runs[:2])  # random s0, s1
    cut.calls, cut.at = 0, first_two + 3  # stops inside opro s0
    with pytest.raises(KeyboardInterrupt):
        compare(methods, prefix="cut", out_dir=tmp_path / "cut", **kw)
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert {"cut-random-s0", "cut-random-s1", "cut-opro-s0"} <= names
    assert "cut-opro-s1" not in names
    assert not (tmp_path / "cut").exists()  # files come at the end

    with pytest.raises(ConfigError, match="already exists.*resume"):
        compare(methods, prefix="cut", out_dir=tmp_path / "cut", **kw)
    with pytest.raises(ConfigError, match="budget"):
        compare(methods, prefix="cut", out_dir=tmp_path / "cut", resume=True,
                **{**kw, "budget": 41})
    cut.calls, cut.at = 0, None
    res = compare(methods, prefix="cut", out_dir=tmp_path / "cut", resume=True, **kw)
    # Finished runs came back from storage; opro s0 paid only what was never answered.
    assert cut.calls == total - (first_two + 2)
    assert _comparable(res) == _comparable(ref)
    assert "already finished" in " ".join(res.runs[0].notes)
    assert {p.name for p in (tmp_path / "cut").iterdir()} == {
        "report.md", "best_so_far.png", "trials.csv"}


def test_cli_compare_prints_how_to_resume_and_that_command_finishes(tmp_path):
    cut = _CutAt(KeyboardInterrupt())
    fake = FakeLLM(cut, name="compare-resume-cli")
    url = f"sqlite:///{tmp_path}/p.db"
    out = tmp_path / "my out"
    args = ["compare", "--methods", "identity,random", "--model", fake.model, "--budget", "30",
            "--storage", url, "--out", str(out), "--task-option", "max_text_tokens=150", *SMALL]
    cut.at = 12
    stopped = runner.invoke(cli.app, args)
    assert stopped.exit_code == 130, stopped.output
    hint = next(line for line in stopped.output.splitlines() if "resume with:" in line)
    words = shlex.split(hint.split("resume with:", 1)[1])
    assert words[:2] == ["promptopt", "compare"] and "--resume" in words
    prefix = words[words.index("--prefix") + 1]
    assert prefix.startswith("compare-")
    for option in ("--methods", "--budget", "--storage", "--scorer", "--task-option"):
        assert option in words
    assert words[words.index("--out") + 1] == str(out)

    cut.at = None
    again = runner.invoke(cli.app, words[1:])
    assert again.exit_code == 0, again.output
    assert "resuming comparison" in again.output
    studies = _studies(url, prefix, ["identity", "random"], [0])
    assert all(s.user_attrs["status"] == "finished" for s in studies.values())
    _check_files_match_studies(out, studies)
    no_prefix = runner.invoke(cli.app, ["compare", "--resume", "--storage", url, *SMALL])
    assert no_prefix.exit_code == 2 and "--prefix" in no_prefix.output
