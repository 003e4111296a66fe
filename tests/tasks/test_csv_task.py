"""The generic ``csv`` task: rendering, parsing, options, the optimizers on it, the CLI,
resume, and plugins registered through entry points; one test on the embedded model."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import promptopt.optimizers  # noqa: F401  (registers every method)
from promptopt.cli import app
from promptopt.comparison import compare, runnable_methods
from promptopt.data import Example, Splits
from promptopt.errors import ConfigError, DataError, LLMError, UnknownNameError
from promptopt.registry import metrics, optimizers, tasks
from promptopt.runs import evaluate, make_task, predict, run
from promptopt.tasks import CSVTask
from promptopt.template import Template
from promptopt.testing import FakeLLM, FakeSetup

runner = CliRunner()
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid",
    "Germany": "Berlin", "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Peru": "Lima", "Norway": "Oslo", "Greece": "Athens", "Poland": "Warsaw",
    "Chile": "Santiago", "Cuba": "Havana", "Ireland": "Dublin", "Austria": "Vienna",
}
OPTIONS = {"inputs": ["country"], "target": "capital", "metric": "exact"}
SIZES = dict(train=6, val=4, test=4)
START = "Answer the question."


def write_capitals(path: Path, rows: dict[str, str] | None = None) -> Path:
    """A CSV with columns id, country, region, capital."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "country", "region", "capital"])
        for i, (country, capital) in enumerate((rows or CAPITALS).items()):
            writer.writerow([f"c{i}", country, "somewhere", capital])
    return path


class Oracle:
    """A fake LLM for both roles on the capitals task (deterministic, stateless).

    As the answering model it knows every capital but says so only when the
    instruction (the first paragraph) asks for a "city"; as the proposer it answers
    in the tag each meta-prompt asks for, with an instruction that asks for a "city"
    or not depending on a hash of the prompt and seed. It records the proposer's prompts.
    """

    def __init__(self) -> None:
        self.meta_prompts: list[str] = []

    def __call__(self, prompt: str, params: dict) -> str:
        match = re.findall(r"^country: (.+)$", prompt, re.MULTILINE)
        if prompt.rstrip().endswith("capital:") and match:
            instruction = prompt.split("\n\n", 1)[0].lower()
            return f"Sure! {CAPITALS[match[-1]]}" if "city" in instruction else "No idea."
        self.meta_prompts.append(prompt)
        h = int(hashlib.sha256(f"{prompt}{params.get('seed')}".encode()).hexdigest()[:8], 16)
        text = f"Name the capital city, variant {h % 997}." if h % 2 else f"Reply briefly, {h}."
        if prompt.rstrip().endswith("<prompt>"):
            return f"{text}</prompt>"
        if "<START>" in prompt:
            return f"<START>{text}<END>"
        return f"{text}</INS>" if prompt.rstrip().endswith("<INS>") else f"<INS>{text}</INS>"


@pytest.fixture
def capitals(tmp_path) -> Path:
    return write_capitals(tmp_path / "capitals.csv")


# --- the task itself ---------------------------------------------------------------------


def test_make_task_reads_the_columns_and_builds_an_instruction(capitals):
    task = make_task("csv", capitals, **SIZES, **OPTIONS)
    assert isinstance(task, CSVTask) and task.name == "csv"
    assert task.input_fields == ("country",) and task.target_field == "capital"
    assert task.splits.sizes() == {"train": 6, "val": 4, "test": 4}
    example = task.examples("train")[0]
    assert set(example.inputs) == {"country"} and example.target == CAPITALS[example.inputs[
        "country"]]
    assert task.start_template().instruction == (
        "Given the country, write the capital. Reply with the capital only."
    )
    assert task.scorer_name == "exact"
    assert task.get_params() == {**OPTIONS, "answer": "line", "max_tokens": None,
                                 "max_input_tokens": 0, "default_prediction": "(no answer)"}


def test_rendering_for_completion_and_chat_models():
    task = CSVTask(Splits([], [], []), inputs=["question", "context"], target="answer")
    assert task.start_template().instruction.startswith("Given the question and context,")
    ex = Example("1", {"question": "Who?", "context": "Ann met Bob."}, "Ann")
    tpl = Template("Answer.").with_demos([{"question": "Q0", "context": "C0", "answer": "A0"}])
    [prompt] = task.render(tpl, ex, chat=False)
    assert prompt["content"] == (
        "Answer.\n\nquestion: Q0\ncontext: C0\nanswer: A0\n\n"
        "question: Who?\ncontext: Ann met Bob.\nanswer:"
    )
    chat = task.render(tpl, ex, chat=True)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[2]["content"] == "A0" and chat[-1]["content"].endswith("Ann met Bob.\nanswer:")
    filled = task.render(Template("Read {context} and answer {question}"), ex, chat=False)
    assert filled[0]["content"] == "Read Ann met Bob. and answer Who?\n\nanswer:"
    assert task.validate_instruction("Use {context} only") is not None  # all or none
    assert task.generation["stop"] == ["\nquestion:", "\ncontext:", "\n\n"]


def test_parsing_strips_chatter_and_keeps_a_line_or_everything():
    line = CSVTask(Splits([], [], []), inputs=["country"], target="capital")
    tpl = Template("x")
    assert line.parse("Sure! Here is the answer: **Paris**\nIt is in France.", tpl) == "Paris"
    assert line.parse("Capital: Rome", tpl) == "Rome"
    assert line.parse("  \n\"Madrid\"\n", tpl) == "Madrid"
    assert line.parse("", tpl) == "(no answer)"
    assert line.parse("Paris", tpl.replace(suffix="France")) == "Paris France"
    assert line.parse("Paris", tpl.replace(answer_prefix="The city")) == "The city Paris"
    full = CSVTask(Splits([], [], []), inputs=["text"], target="summary", answer="full")
    assert full.parse("Summary: first line.\nsecond line.", tpl) == "first line.\nsecond line."
    assert full.generation == {"max_tokens": 256, "stop": ["\ntext:"]}


def test_bad_options_are_clear_errors(capitals):
    with pytest.raises(DataError) as info:
        make_task("csv", capitals, inputs=["country"], target="capitl", **SIZES)
    assert "capitals.csv" in str(info.value) and info.value.field == "capitl"
    with pytest.raises(DataError, match="'contry'"):
        make_task("csv", capitals, inputs=["contry"], target="capital", **SIZES)
    with pytest.raises(ConfigError, match="give the input column"):
        make_task("csv", capitals, target="capital", **SIZES)
    with pytest.raises(ConfigError, match="give the target column"):
        make_task("csv", capitals, inputs=["country"], **SIZES)
    with pytest.raises(ConfigError, match="also an input"):
        make_task("csv", capitals, inputs=["country", "capital"], target="capital", **SIZES)
    with pytest.raises(ConfigError, match="answer must be one of"):
        make_task("csv", capitals, answer="paragraph", **OPTIONS, **SIZES)
    with pytest.raises(UnknownNameError, match=r"unknown metric 'bleu'"):
        make_task("csv", capitals, **{**OPTIONS, "metric": "bleu"}, **SIZES)
    with pytest.raises(ConfigError, match=r"task 'prompt-recovery' has no option 'inputs' .*"
                                          r"task csv takes it"):
        make_task("prompt-recovery", inputs=["country"])
    with pytest.raises(ConfigError, match=r"task 'csv' has no option 'input'"):
        make_task("csv", capitals, input=["country"], target="capital", **SIZES)


# --- the optimizers on a csv task ----------------------------------------------------------


@pytest.mark.parametrize("method", ["opro", "ape", "protegi", "evoprompt-ga", "evoprompt-de"])
def test_llm_methods_improve_a_csv_task_with_generic_meta_prompts(method, capitals):
    oracle = Oracle()
    task = make_task("csv", capitals, scorer="hashing", **SIZES, **OPTIONS)
    setup = FakeSetup(budget=80, replies=oracle, task=task)
    result = optimizers.get(method)().optimize(
        task, setup.evaluator, setup.proposer, start=Template(START), seed=0
    )
    assert setup.budget.spent <= 80
    assert result.start_val_score == 0.0
    assert result.val_score == 1.0 and "city" in result.template.instruction
    assert oracle.meta_prompts
    for prompt in oracle.meta_prompts:
        assert "rewrite" not in prompt.lower() and "original text" not in prompt.lower()
    if method in ("opro", "ape", "protegi"):  # the methods that show examples
        assert any("country: " in p for p in oracle.meta_prompts)


def test_protegi_describes_the_csv_task():
    task = CSVTask(Splits([], [], []), inputs=["country"], target="capital", metric="rouge-l")
    assert task.description == "given the country, answer with the capital (metric: rouge-l)"


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_baselines_draw_on_the_tasks_own_instructions(method, capitals):
    fake = FakeLLM(lambda prompt, params: "Paris")
    result = run(method, task="csv", data=capitals, task_options=OPTIONS, model=fake.model,
                 scorer="hashing", budget=40, storage="sqlite:///b.db", **SIZES)
    study = optuna.load_study(study_name=result.study, storage="sqlite:///b.db")
    tried = {t.user_attrs["template"]["instruction"] for t in study.trials}
    task = make_task("csv", capitals, **SIZES, **OPTIONS)
    assert len(tried) > 1 and tried <= set(task.instruction_pool)
    assert all("rewrite" not in t.lower() for t in tried)
    answers = {c["prompt"].rsplit("\n", 1)[-1] for c in fake.calls}
    assert answers == {"capital:"}  # tpe tried no prompt-recovery answer prefix


def test_mean_prompt_refuses_exact_but_runs_with_scs(capitals):
    fake = FakeLLM(lambda prompt, params: "Paris")
    kw = dict(task="csv", data=capitals, model=fake.model, scorer="hashing", budget=30, **SIZES)
    with pytest.raises(ConfigError, match=r"mean-prompt cannot run on task csv: .*scs.*exact"):
        run("mean-prompt", task_options=OPTIONS, **kw)
    with pytest.raises(ConfigError, match=r"--suffix .*embedding metric.*exact"):
        run("identity", task_options=OPTIONS, suffix=True, **kw)
    assert not fake.calls  # refused before any LLM call
    assert not optuna.get_all_study_names("sqlite:///promptopt.db")  # and any study
    result = run("mean-prompt", task_options={**OPTIONS, "metric": "scs"}, **kw)
    assert result.scorer.startswith("hashing-bow")
    assert any("mean prompt" in note for note in result.notes)


# --- the library API with a Python metric ----------------------------------------------------


def near_miss(prediction: str, target: str) -> float:
    """1 for the right capital, 0.5 when only the first letter is right."""
    if prediction.strip().lower() == target.lower():
        return 1.0
    return 0.5 if prediction[:1].lower() == target[:1].lower() else 0.0


def test_run_with_a_python_metric_function_stores_it_by_name(capitals):
    fake = FakeLLM(Oracle())
    url = "sqlite:///lib.db"
    result = run("opro", task="csv", data=capitals, task_options={**OPTIONS, "metric": near_miss},
                 model=fake.model, scorer="hashing", budget=40, storage=url, study="lib",
                 start=START, **SIZES)
    assert result.scorer == "test_csv_task:near_miss"
    assert result.val_score == 1.0 > result.start_val_score
    settings = optuna.load_study(study_name="lib", storage=url).user_attrs["settings"]
    assert settings["task"] == "csv"
    assert settings["task_options"]["metric"] == "test_csv_task:near_miss"
    assert settings["task_options"]["inputs"] == ["country"]
    ev = evaluate(result.template, split="test", task="csv", data=capitals, model=fake.model,
                  task_options={**OPTIONS, "metric": near_miss}, **SIZES)
    assert ev.score == 1.0 and ev.scorer == "test_csv_task:near_miss"


def test_predict_writes_the_target_column(capitals, tmp_path):
    fake = FakeLLM(Oracle())
    out = tmp_path / "pred.csv"
    n = predict("Name the capital city.", capitals, out, task="csv", task_options=OPTIONS,
                model=fake.model)
    rows = list(csv.DictReader(out.open()))
    assert n == len(CAPITALS) == len(rows)
    assert rows[0] == {"id": "c0", "capital": "Paris"}


def test_compare_on_a_csv_task(capitals):
    fake = FakeLLM(Oracle())
    kw = dict(task="csv", data=capitals, task_options=OPTIONS, model=fake.model,
              scorer="hashing", budget=30, storage="sqlite:///c.db", start=START, **SIZES)
    with pytest.raises(ConfigError, match="mean-prompt cannot run"):
        compare(["random", "mean-prompt"], **kw)
    assert not optuna.get_all_study_names("sqlite:///c.db")  # refused before any run
    result = compare(["random", "opro"], prefix="cmp", **kw)
    assert result.settings["task_options"]["target"] == "capital"
    assert result.row("opro").val.mean == 1.0
    assert [r.name for r in result.rows if r.kind == "baseline"] == ["start template"]
    assert "not an embedding similarity" in Path(result.files["report"]).read_text()


def test_compare_leaves_out_methods_that_cannot_run_unless_named(capitals):
    task = make_task("csv", capitals, **SIZES, **OPTIONS)
    with pytest.warns(UserWarning, match="left out method mean-prompt: .*scs"):
        assert runnable_methods(["opro", "mean-prompt"], task, explicit=False) == ["opro"]
    with pytest.raises(ConfigError, match="mean-prompt cannot run on task csv"):
        runnable_methods(["opro", "mean-prompt"], task, explicit=True)
    scs = make_task("csv", capitals, scorer="hashing", **SIZES, **{**OPTIONS, "metric": "scs"})
    assert runnable_methods(["mean-prompt"], scs, explicit=True) == ["mean-prompt"]


# --- the command line ----------------------------------------------------------------------


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


SMALL = ["--train", "6", "--val", "4", "--test", "4", "--scorer", "hashing"]


def test_cli_run_eval_and_predict_on_a_csv_task(capitals, tmp_path):
    fake = FakeLLM(Oracle())
    url = f"sqlite:///{tmp_path}/cli.db"
    res = _cli("run", "--task", "csv", "--data", capitals, "--inputs", "country", "--target",
               "capital", "--metric", "exact", "--method", "opro", "--model", fake.model,
               "--budget", 40, "--storage", url, "--study", "cli", "--start", START, *SMALL)
    assert res.exit_code == 0, res.output
    assert "best template (test exact 1.0000)" in res.stdout
    settings = optuna.load_study(study_name="cli", storage=url).user_attrs["settings"]
    assert {k: settings["task_options"][k] for k in OPTIONS} == OPTIONS
    assert settings["scorer"] == "exact"

    res = _cli("eval", "Name the capital city.", "--task", "csv", "--data", capitals,
               "--inputs", "country", "--target", "capital", "--model", fake.model, *SMALL)
    assert res.exit_code == 0, res.output
    assert "mean score: 1.0000" in res.stdout and "(exact)" in res.stdout

    out = tmp_path / "sub.csv"  # the study's task and options are used
    res = _cli("predict", "--study", "cli", "--storage", url, "--data", capitals, "--output",
               out, "--model", fake.model)
    assert res.exit_code == 0, res.output
    assert out.read_text().splitlines()[:2] == ["id,capital", "c0,Paris"]


def test_cli_rejects_bad_task_options(capitals):
    fake = FakeLLM(Oracle())
    res = _cli("run", "--inputs", "country", "--target", "capital", "--model", fake.model,
               "-m", "identity", *SMALL)
    assert res.exit_code == 2
    assert "task 'prompt-recovery' has no option" in res.output
    assert "task csv takes it" in res.output
    res = _cli("run", "--task", "csv", "--data", capitals, "--inputs", "country", "--target",
               "capitol", "--model", fake.model, "-m", "identity", *SMALL)
    assert res.exit_code == 2 and "capitals.csv" in res.output and "'capitol'" in res.output
    res = _cli("eval", "x", "--task", "csv", "--data", capitals, "--inputs", "country",
               "--target", "capital", "--metric", "accuracy", "--model", fake.model, *SMALL)
    assert res.exit_code == 2 and "unknown metric 'accuracy'" in res.output
    res = _cli("run", "--task", "csv", "--data", capitals, "--inputs", "country", "--target",
               "capital", "--task-option", "answer", *SMALL)
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    assert not fake.calls


class Outage:
    """Oracle replies that fail with an LLM error from call ``at`` on (None: never)."""

    def __init__(self) -> None:
        self.oracle = Oracle()
        self.at: int | None = None
        self.calls = 0

    def __call__(self, prompt, params):
        self.calls += 1
        if self.at is not None and self.calls >= self.at:
            raise LLMError("provider outage")
        return self.oracle(prompt, params)


def test_cli_resumes_an_interrupted_csv_run(capitals, tmp_path):
    outage = Outage()
    fake = FakeLLM(outage)
    url = f"sqlite:///{tmp_path}/r.db"
    args = ["run", "--task", "csv", "--data", capitals, "--inputs", "country", "--target",
            "capital", "--metric", "exact", "-m", "opro", "--model", fake.model, "--budget", 40,
            "--start", START, "--storage", url, "--json", *SMALL]
    ref = runner.invoke(app, [str(a) for a in args] + ["--study", "ref"],
                        env={"PROMPTOPT_CACHE_DIR": str(tmp_path / "ref-cache")})
    assert ref.exit_code == 0, ref.output
    total, outage.calls, outage.at = outage.calls, 0, outage.calls // 2
    cut = _cli(*args, "--study", "cut")
    assert cut.exit_code == 2 and "resume with:" in cut.output
    outage.at, outage.calls = None, 0
    bad = _cli("run", "--resume", "--study", "cut", "--storage", url, "--metric", "rouge-l")
    assert bad.exit_code == 2 and "--metric 'rouge-l'" in bad.output and "'exact'" in bad.output
    res = _cli("run", "--resume", "--study", "cut", "--storage", url, "--json")
    assert res.exit_code == 0, res.output
    resumed, reference = json.loads(res.stdout), json.loads(ref.stdout)
    assert resumed["template"] == reference["template"] and resumed["scorer"] == "exact"
    assert resumed["val_score"] == reference["val_score"] == 1.0
    assert resumed["test_score"] == reference["test_score"]
    assert outage.calls == total - (total // 2 - 1)  # the answered calls came from the cache


# --- plugins through entry points ----------------------------------------------------------

PLUGIN_MODULE = '''
from promptopt.tasks import CSVTask


class CapitalsTask(CSVTask):
    """Capitals of countries (a plugin task with fixed columns)."""

    description = "capitals of countries (plugin)"

    def __init__(self, splits, *, scorer="auto", metric="exact"):
        super().__init__(splits, inputs=["country"], target="capital", metric=metric,
                         scorer=scorer)


def first_letter(prediction, target):
    """Half marks for the right first letter (a plugin metric)."""
    return 1.0 if prediction == target else 0.5 * (prediction[:1] == target[:1])
'''


def make_plugin(root: Path) -> Path:
    """A module and a dist-info whose entry points register one good and one broken task."""
    root.mkdir()
    (root / "promptopt_capitals_plugin.py").write_text(PLUGIN_MODULE)
    info = root / "promptopt_capitals_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: promptopt-capitals-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[promptopt.tasks]\n"
        "capitals = promptopt_capitals_plugin:CapitalsTask\n"
        "half-done = promptopt_missing_module_xyz:Task\n"
        "[promptopt.scoring._metrics]\n"
        "first-letter = promptopt_capitals_plugin:first_letter\n"
    )
    return root


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin on sys.path; the task registry is restored afterwards."""
    root = make_plugin(tmp_path / "site")
    for registry in (tasks, metrics):
        for attr in ("_items", "_plugins", "_broken"):
            monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "promptopt_capitals_plugin", raising=False)
    tasks.load_plugins()
    metrics.load_plugins()
    return root


def test_entry_point_plugin_registers_a_task(plugin, capitals):
    assert "capitals" in tasks.names() and tasks.plugins()["capitals"].startswith("capitals =")
    assert tasks.get("capitals").__name__ == "CapitalsTask"
    fake = FakeLLM(Oracle())
    result = run("identity", task="capitals", data=capitals, model=fake.model, scorer="hashing",
                 budget=20, storage="sqlite:///p.db", start="Name the capital city.", **SIZES)
    assert result.test_score == 1.0 and result.scorer == "exact"
    assert "first-letter" in metrics.names()
    task = make_task("capitals", capitals, metric="first-letter", **SIZES)
    assert task.score(["Pisa", "Paris"], [Example("a", {}, "Paris")] * 2).tolist() == [0.5, 1.0]


def test_broken_plugin_is_reported_not_fatal(plugin):
    assert "half-done" not in tasks.names()
    why = tasks.broken()["half-done"]
    assert "half-done = promptopt_missing_module_xyz:Task" in why and "promptopt.tasks" in why
    with pytest.raises(ConfigError, match=r"task 'half-done' is unusable: entry point "
                                          r"'half-done = promptopt_missing_module_xyz:Task'"):
        tasks.get("half-done")
    res = _cli("list")
    assert res.exit_code == 0, res.output
    assert "capitals" in res.stdout and "half-done" in res.stdout
    assert "ModuleNotFoundError" in res.stdout.replace("\n", " ").replace("│", " ")


def test_plugins_load_in_a_fresh_process(tmp_path):
    root = make_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get(
        "PYTHONPATH", "")]), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "promptopt", "list"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "capitals of countries (plugin)" in out.stdout
    assert "broken task" in out.stdout and "promptopt_missing_module_xyz" in out.stdout


# --- the real embedded model ----------------------------------------------------------------


@pytest.mark.embedded
def test_csv_task_on_the_embedded_model(tmp_path, embedded_cache):
    easy = {"France": "Paris", "Germany": "Berlin", "Japan": "Tokyo", "Egypt": "Cairo",
            "Poland": "Warsaw", "Greece": "Athens"}
    data = write_capitals(tmp_path / "easy.csv", easy)
    ev = evaluate("Given the country, write the capital. Reply with the capital only.",
                  split="test", task="csv", data=data, task_options=OPTIONS, train=1, val=1,
                  test=4, cache_dir=embedded_cache)
    assert ev.n == 4 and ev.scorer == "exact"
    assert all(p.strip() and "\n" not in p and "capital:" not in p for p in ev.predictions)
    assert ev.score > 0  # a 270M base model knows some capitals
