"""Screenshot of a trial page in optuna-dashboard: ``docs/dashboard_trial.png``.

Runs OPRO on the fake LLM (no model needed, a few seconds) into a temporary SQLite
study, serves it with ``promptopt dashboard``, and has headless Chromium (the Debian
package ``chromium``) take a screenshot of the page of the best finalist's validation
trial (its note: template, parents, word diff, predictions).

    python experiments/dashboard_screenshot.py [--out docs/dashboard_trial.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptopt.runs import run  # noqa: E402
from promptopt.testing import FakeLLM  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard_trial.png"))
    parser.add_argument("--size", default="1500,1900", help="window width,height")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.db"
        fake = FakeLLM(name="screenshot")
        result = run("opro", model=fake.model, budget=60, seed=0, scorer="hashing", train=8,
                     val=4, test=4, storage=url, study="opro-demo", cache_dir=f"{tmp}/cache")
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "promptopt", "dashboard", "--storage", url, "--port",
             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    studies = _get(f"{base}/api/studies")["study_summaries"]
                    break
                except OSError:
                    time.sleep(0.3)
            else:
                sys.exit("the dashboard did not start")
            study_id = studies[0]["study_id"]
            detail = _get(f"{base}/api/studies/{study_id}")
            finalists = [t for t in detail["trials"] if t["state"] == "Complete"
                         and any(a["value"] == '{"role": "finalist"}' for a in t["user_attrs"])]
            best = max(finalists or detail["best_trials"], key=lambda t: t["values"][0])
            page = f"{base}/dashboard/studies/{study_id}/trials?numbers={best['number']}"
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}/profile",
                 "--hide-scrollbars", f"--window-size={args.size}",
                 "--virtual-time-budget=20000", f"--screenshot={args.out}", page],
                check=True, capture_output=True, timeout=120)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"wrote {args.out}: trial {best['number']} of {result.study} "
          f"(val {result.val_score:.4f})")


if __name__ == "__main__":
    main()
