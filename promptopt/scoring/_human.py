"""The human metric: a person rates candidates' outputs in optuna-dashboard.

``--metric human`` (``scorer="human"``) replaces the automatic scorer with a person.
For each evaluation to be judged, :class:`HumanScorer` adds a *running* trial to the
companion study ``<run study>-ratings`` (same storage): its note (markdown) and user
attributes show the candidate template and its outputs on a few of the evaluated
examples (inputs, prediction, reference). A 1-5 slider is registered on that study
with optuna-dashboard's human-in-the-loop API
(:func:`optuna_dashboard.register_objective_form_widgets`), so the dashboard shows a
rating form on every running trial; submitting it tells the trial its value. The
evaluation waits for that, polling the storage (with a message naming the trial and
the dashboard URL), and turns the rating ``r`` into the score ``(r - 1) / 4`` for
every example of the evaluation. Marking the trial "Fail" in the dashboard rates the
candidate 0.

Ratings live in the storage, so nothing is asked twice: a resumed run (or a rerun of
the same evaluation) finds the rated trial by its key (template id and evaluated
example ids) and reuses the rating; a trial still waiting from an interrupted run is
waited on again rather than asked anew. A companion study keeps the run study's
trials one per evaluation, as resuming expects.

Settings, in a metric string such as ``human:examples=2,timeout=600``:

- ``examples`` (3): examples shown per candidate;
- ``timeout`` (none): seconds to wait for one rating before stopping the run
  (resumable: the study is marked interrupted and the rating can still be given);
- ``poll`` (1.0): seconds between storage polls;
- ``scope`` (``evaluation``): ``evaluation`` asks once per template and example set,
  ``template`` once per template (its rating is reused on any examples);
- ``dashboard`` (``http://127.0.0.1:8080``): the dashboard URL shown in the message.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from promptopt.data import Example
from promptopt.errors import ConfigError, HumanTimeout
from promptopt.template import Template

RATING_MIN, RATING_MAX = 1, 5
RATINGS_SUFFIX = "-ratings"
MAX_SHOWN_CHARS = 600
"""Characters of each input, prediction and reference shown to the rater."""

_SETTINGS: dict[str, Callable[[str], Any]] = {
    "examples": int,
    "timeout": lambda v: None if v.lower() in ("", "none", "inf") else float(v),
    "poll": float,
    "scope": str,
    "dashboard": str,
}


def normalize_rating(value: float) -> float:
    """A 1-5 rating as a score in [0, 1] (values outside the scale are clipped)."""
    return float(min(max((value - RATING_MIN) / (RATING_MAX - RATING_MIN), 0.0), 1.0))


def ratings_study_name(study: str) -> str:
    """The companion study that holds the rating trials of run ``study``."""
    return f"{study}{RATINGS_SUFFIX}"


def _clip(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " ..."


def _fenced(text: str) -> str:
    """``text`` in a fenced block that its own backticks cannot close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def rating_note(template: Template, shown: Sequence[dict[str, Any]], run_study: str) -> str:
    """The markdown a rating trial shows: the template, then each example's outputs."""
    parts = [
        f"## Rate candidate `{template.id}` (run `{run_study}`)",
        "Rate how good these outputs are on the slider below: "
        f"{RATING_MIN} = useless ... {RATING_MAX} = excellent, then **Submit**.",
        "### Instruction",
        _fenced(template.instruction),
    ]
    if template.demos:
        parts.append(f"({len(template.demos)} few-shot demos, not shown)")
    if template.suffix:
        parts += ["Suffix appended to every prediction:", _fenced(template.suffix)]
    for i, ex in enumerate(shown, 1):
        parts.append(f"### Example {i} (id `{ex['id']}`)")
        for name, value in ex["inputs"].items():
            parts += [f"**{name}**", _fenced(value)]
        parts += ["**prediction**", _fenced(ex["prediction"]),
                  "**reference**", _fenced(ex["reference"])]
    return "\n\n".join(parts)


class HumanScorer:
    """A person's 1-5 rating of a template's outputs, given in optuna-dashboard.

    Implements the metric interface (``name``, ``score``) plus ``score_examples``, which
    :meth:`promptopt.tasks.Task.score` prefers because a rating needs the inputs and the
    template. :meth:`attach` names the run's storage and study (the runner does it).

    Args:
        examples: Examples shown per candidate (the first ones evaluated).
        timeout: Seconds to wait for one rating (None: wait until it comes); then
            :class:`~promptopt.errors.HumanTimeout` stops the run, resumably.
        poll: Seconds between storage polls.
        scope: ``"evaluation"`` (one rating per template and example set) or
            ``"template"`` (one per template, reused on other examples).
        dashboard: URL of the optuna-dashboard that serves the storage (for messages).
        storage: Optuna storage URL (or set later by :meth:`attach`).
        study: The run's study; ratings go to ``<study>-ratings``.
        on_wait: Called with the waiting message (default: printed to stderr).
    """

    def __init__(
        self,
        *,
        examples: int = 3,
        timeout: float | None = None,
        poll: float = 1.0,
        scope: str = "evaluation",
        dashboard: str = "http://127.0.0.1:8080",
        storage: str | None = None,
        study: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.examples = examples
        self.timeout = timeout
        self.poll = poll
        self.scope = scope
        self.dashboard = dashboard
        self.storage = storage
        self.study = study
        self.on_wait = on_wait
        self._study: Any = None
        self._known: dict[str, float] = {}
        self.asked = 0
        """Ratings this scorer asked for (new rating trials created)."""
        self.reused = 0
        """Ratings found already given in the storage."""

    @classmethod
    def from_spec(cls, spec: str) -> HumanScorer:
        """Build from a metric string: ``human`` or ``human:examples=2,timeout=600``.

        The metric's :attr:`name` (what a study records) is accepted as ``human``.
        """
        name, _, rest = spec.partition(":")
        if name.strip() not in ("human", cls().name):
            raise ConfigError(f"unknown metric {spec!r}; did you mean 'human'?")
        kwargs: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in _SETTINGS:
                raise ConfigError(
                    f"bad human metric setting {item!r} in {spec!r}; use KEY=VALUE with KEY in "
                    f"{', '.join(_SETTINGS)}"
                )
            try:
                kwargs[key] = _SETTINGS[key](value.strip())
            except ValueError:
                raise ConfigError(
                    f"bad value for human metric setting {key!r}: {value!r}"
                ) from None
        return cls(**kwargs)

    @property
    def name(self) -> str:
        """The metric's name, recorded with every score."""
        return f"human-rating-{RATING_MIN}-{RATING_MAX}"

    def attach(self, storage: str, study: str) -> None:
        """Rate into ``<study>-ratings`` in ``storage`` (the run's storage and study).

        Raises:
            ConfigError: a setting is invalid (checked here, before any LLM call).
        """
        if (storage, study) != (self.storage, self.study):
            self.storage, self.study, self._study = storage, study, None
        self.validate()

    def validate(self) -> None:
        """Check the settings; raise :class:`ConfigError` naming the bad one."""
        if self.examples < 1:
            raise ConfigError(f"human metric: examples={self.examples} must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"human metric: timeout={self.timeout} must be positive")
        if self.poll <= 0:
            raise ConfigError(f"human metric: poll={self.poll} must be positive")
        if self.scope not in ("evaluation", "template"):
            raise ConfigError(f"human metric: scope={self.scope!r} must be evaluation or template")
        if not self.storage or not self.study:
            raise ConfigError(
                "the human metric needs a storage and study to show candidates in "
                "optuna-dashboard (run it through promptopt.run or give storage= and study=)"
            )

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Not available: a rating needs the template and the inputs (see ``score_examples``)."""
        raise ConfigError(
            "the human metric rates a template's outputs on their inputs; it cannot score bare "
            "predictions against targets (mean-prompt and --suffix need an embedding scorer)"
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Not available: the human metric has no embeddings."""
        raise ConfigError("the human metric has no embeddings (mean-prompt and --suffix need "
                          "an embedding scorer)")

    def key(self, template: Template, examples: Sequence[Example]) -> str:
        """What identifies one rating: the template and, by default, the examples."""
        if self.scope == "template":
            return template.id
        ids = hashlib.sha256("\0".join(e.id for e in examples).encode("utf-8")).hexdigest()
        return f"{template.id}:{ids[:16]}"

    def score_examples(
        self, predictions: Sequence[str], examples: Sequence[Example], template: Template | None
    ) -> np.ndarray:
        """Ask for (or reuse) a rating of ``template``'s outputs; one score per example.

        Blocks until the rating is given in optuna-dashboard.

        Raises:
            HumanTimeout: no rating came within ``timeout`` seconds.
            KeyboardInterrupt: Ctrl-C while waiting; the rating trial stays open and a
                resumed run waits on it again.
        """
        if template is None:
            raise ConfigError("the human metric needs the template being rated")
        if not predictions:
            return np.zeros(0)
        self.validate()
        key = self.key(template, examples)
        if key not in self._known:
            trial = self._find(key)
            if trial is None:
                trial = self._ask(key, template, predictions, examples)
            self._known[key] = self._wait(trial)
        return np.full(len(predictions), self._known[key], dtype=np.float64)

    # --- storage --------------------------------------------------------------------------

    def _ratings(self) -> Any:
        """The ratings study, created with its form and note on first use."""
        if self._study is not None:
            return self._study
        from optuna_dashboard import SliderWidget, register_objective_form_widgets, save_note

        from promptopt.tracking import import_optuna, open_storage

        optuna = import_optuna()
        name = ratings_study_name(str(self.study))
        study = optuna.create_study(storage=open_storage(str(self.storage)), study_name=name,
                                    direction="maximize", load_if_exists=True)
        if "run_study" not in study.user_attrs:
            study.set_user_attr("run_study", self.study)
            study.set_user_attr("rating_scale", f"{RATING_MIN}-{RATING_MAX}")
            save_note(study, f"Ratings for promptopt run `{self.study}`: open each running trial, "
                      "read the candidate's outputs in its note and rate them with the form.")
        register_objective_form_widgets(study, [SliderWidget(
            min=RATING_MIN, max=RATING_MAX, step=1,
            labels=[(1, "1 useless"), (3, "3 acceptable"), (5, "5 excellent")],
            description="How good are this candidate's outputs? "
            f"{RATING_MIN} = useless, {RATING_MAX} = excellent",
        )])
        self._study = study
        return study

    def _find(self, key: str) -> Any:
        """The rating trial for ``key``: a rated one if any, else one still waiting."""
        from optuna.trial import TrialState

        found = [t for t in self._ratings().get_trials(deepcopy=False)
                 if t.user_attrs.get("rating_key") == key]
        for states in ((TrialState.COMPLETE, TrialState.FAIL), (TrialState.RUNNING,)):
            matching = [t for t in found if t.state in states]
            if matching:
                if states[0] is TrialState.COMPLETE:
                    self.reused += 1
                return max(matching, key=lambda t: t.number)
        return None

    def _ask(
        self, key: str, template: Template, predictions: Sequence[str],
        examples: Sequence[Example],
    ) -> Any:
        """Open a running trial showing the candidate and its outputs."""
        from optuna_dashboard import save_note

        shown = [
            {"id": e.id, "inputs": {k: _clip(v) for k, v in e.inputs.items()},
             "prediction": _clip(p), "reference": _clip(e.target)}
            for e, p in list(zip(examples, predictions, strict=True))[: self.examples]
        ]
        from optuna.trial import Trial, TrialState, create_trial

        study = self._ratings()
        attrs = {
            "rating_key": key, "template_id": template.id, "instruction": template.instruction,
            "template": template.to_dict(), "run_study": self.study,
            "n_examples": len(examples), "examples": shown,
        }
        # One write creates the running trial with its attributes (the form appears
        # with them); the note follows, keyed by the new trial's id.
        storage = study._storage
        trial_id = storage.create_new_trial(
            study._study_id, template_trial=create_trial(state=TrialState.RUNNING,
                                                         user_attrs=attrs))
        save_note(Trial(study, trial_id), rating_note(template, shown, str(self.study)))
        self.asked += 1
        return storage.get_trial(trial_id)

    def _wait(self, trial: Any) -> float:
        """Poll until ``trial`` is rated; its score (a failed trial scores 0)."""
        from optuna.trial import TrialState

        storage = self._ratings()._storage
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        announced = False
        while True:
            if trial.state == TrialState.COMPLETE and trial.value is not None:
                return normalize_rating(float(trial.value))
            if trial.state == TrialState.FAIL:
                return 0.0
            if not announced:
                self._announce(trial.number)
                announced = True
            if deadline is not None and time.monotonic() >= deadline:
                raise HumanTimeout(
                    f"no rating of trial {trial.number} in study "
                    f"{ratings_study_name(str(self.study))!r} after {self.timeout:g} s; rate it "
                    f"in optuna-dashboard ({self._url()}) and resume the run"
                )
            time.sleep(self.poll)
            trial = storage.get_trial(trial._trial_id)

    def _url(self) -> str:
        return f"{self.dashboard.rstrip('/')}/dashboard/studies/{self._ratings()._study_id}/trials"

    def _announce(self, number: int) -> None:
        message = (
            f"waiting for a rating of trial {number} in optuna-dashboard at {self._url()} "
            f"(study {ratings_study_name(str(self.study))!r}; serve it with: promptopt dashboard "
            f"--storage {self.storage})"
        )
        if self.on_wait is not None:
            self.on_wait(message)
        else:
            print(message, file=sys.stderr, flush=True)
