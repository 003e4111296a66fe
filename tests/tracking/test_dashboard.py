"""`promptopt dashboard` really serves the study: read trials back over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from promptopt.template import Template
from promptopt.testing import FakeSetup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_dashboard_serves_the_studys_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/dash.db"
    setup = FakeSetup(budget=None, storage=url, study="dash-study", method="unit")
    parent = Template("First instruction.")
    setup.evaluator.evaluate(parent, "train")
    setup.evaluator.evaluate(Template("Second instruction."), "val", parents=[parent.id])
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptopt", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        studies = None
        while time.time() < deadline:
            try:
                studies = _get(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode()) from None
                time.sleep(0.3)
        assert studies is not None, "dashboard did not start"
        [summary] = [s for s in studies["study_summaries"] if s["study_name"] == "dash-study"]
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        trials = detail["trials"]
        assert len(trials) == 2
        attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in trials]
        assert [a["instruction"] for a in attrs] == ["First instruction.", "Second instruction."]
        assert attrs[1]["split"] == "val" and parent.id in attrs[1]["parents"]
        with urllib.request.urlopen(f"{base}/dashboard", timeout=5) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
