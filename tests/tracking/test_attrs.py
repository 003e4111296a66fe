"""StudyAttrs: the one reader and writer of a run's study attributes."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest

import promptopt
from promptopt.runs import RunSession
from promptopt.tracking import StudyAttrs, Tracker

KEYS = {"status_detail", "refine_settings"}
PREFIXES = ("worker:", "heartbeat:", "result:")


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[str, object]] = []

    def set_attr(self, key: str, value: object) -> None:
        self.writes.append((key, value))


def test_records_and_results_by_worker():
    attrs = StudyAttrs({
        "status": "running", "status_detail": {"pid": 1}, "worker:2": {"status": "finished"},
        "worker:x": {"status": "?"}, "heartbeat:2": 12.5, "result:2": {"val_score": 0.5},
        "result": {"val_score": 0.4},
    })
    assert attrs.worker_records() == {0: {"pid": 1, "status": "running"},
                                      2: {"status": "finished"}}
    assert attrs.has_workers() and attrs.heartbeat(2) == 12.5 and attrs.heartbeat(0) is None
    assert attrs.worker_results() == {2: {"val_score": 0.5}, 0: {"val_score": 0.4}}
    assert attrs.has_own_result(2) and not attrs.has_own_result(0)
    merged = StudyAttrs({"result": {"val_score": 0.4, "workers": {}}})
    assert merged.worker_results() == {}  # a merged result is nobody's own
    empty = StudyAttrs({})
    assert (empty.settings, empty.status, empty.result, empty.status_detail) == (
        None, None, None, {})


def test_worker_zero_writes_its_detail_before_its_status():
    tracker = Recorder()
    StudyAttrs.write_worker(tracker, 0, {"status": "running", "pid": 7})
    StudyAttrs.write_worker(tracker, 3, {"status": "running", "pid": 8})
    assert tracker.writes == [("status_detail", {"pid": 7}), ("status", "running"),
                              ("worker:3", {"status": "running", "pid": 8})]


def test_no_other_product_module_spells_the_attribute_keys():
    root = Path(promptopt.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_attrs.py" or "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in KEYS or node.value.startswith(PREFIXES)):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def _status(url: str, name: str) -> StudyAttrs:
    return StudyAttrs(optuna.load_study(study_name=name, storage=url).user_attrs)


def test_a_session_records_running_then_finished(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    seen = []
    with RunSession(url, "ok", {"seed": 0, "scorer": "x"}, seed=0, named=False,
                    on_study=seen.append) as session:
        assert isinstance(session.tracker, Tracker)
        assert _status(url, "ok").status == "running"
    attrs = _status(url, "ok")
    assert seen == ["ok"] and attrs.status == "finished" and attrs.settings == {
        "seed": 0, "scorer": "x"}


@pytest.mark.parametrize("error, status", [(KeyboardInterrupt(), "interrupted"),
                                           (ValueError("bad"), "failed")])
def test_a_session_records_the_stop(tmp_path, error, status):
    url = f"sqlite:///{tmp_path}/s.db"
    with pytest.raises(type(error)):
        with RunSession(url, "stop", {"seed": 0}, seed=0, named=False):
            raise error
    attrs = _status(url, "stop")
    assert attrs.status == status and type(error).__name__ in attrs.status_detail["reason"]
