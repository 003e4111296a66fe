"""Several workers, one study: N processes, on one machine or many, run one search.

``promptopt run --study NAME --storage URL`` started while ``NAME`` holds a run with
the same settings that at least one live worker is running joins that run as one
more worker instead of being refused (:func:`plan_start`). The study's first
worker (the one that created it) is worker 0 and runs exactly as a lone run would;
every later worker registers with a trial of its own (state ``PRUNED``, no value,
user attribute ``promptopt_worker``) and its index is 1 + the number of registration
trials numbered before it. Optuna numbers trials under a lock on the study row, so
two workers that start at the same instant get different indexes. A study made
empty beforehand (``optuna create-study``) has no creator: the workers that find it
empty each add a claim trial (``PRUNED``, user attribute ``promptopt_claim``), and
the one numbered first among live claimants is worker 0; the others join its run.

Worker ``k`` searches with its own seed stream (:func:`worker_seed`), draws its
minibatches from the study's seed (so OPRO and EvoPrompt workers score candidates on
the same examples and can read each other's scores), spends its own budget, and
records its state under the study attribute ``worker:<k>`` (worker 0: ``status`` and
``status_detail``, as a lone run). Workers on a database server write a heartbeat
(``heartbeat:<k>``) every :data:`~promptopt.runs._session.HEARTBEAT_S` seconds, so
that a worker on another machine can tell a live run from a dead one; on one machine
the process id tells.

When a worker ends it stores its own result as ``result:<k>`` and sets the study's
``result`` to the pick among all finished workers' results, re-reading until no other
worker's result appeared meanwhile. Each worker chose for itself with its finalists'
comparisons corrected (Bonferroni); the pick corrects again for every worker's
finalists together (:func:`~promptopt.search.choose_among_workers`: the best worker
whose validation gain over the start stays credible, else the starting template), so
that N workers do not give luck N chances to replace the start. The last worker to
finish reports the template that readers of the study
(:func:`promptopt.runs._apply.best_template`, the dashboard) see.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptopt.errors import ConfigError, ResumeError
from promptopt.runs._process import is_live_here, is_running, on_this_host, this_process
from promptopt.runs._results import RunResult
from promptopt.runs._spec import shared_settings
from promptopt.runs._state import check_new
from promptopt.scoring import GainInterval
from promptopt.search import Selection, choose_among_workers
from promptopt.template import Template
from promptopt.tracking import (
    RunStatus,
    StudyAttrs,
    Tracker,
    create_study,
    import_optuna,
    open_storage,
    storage_errors,
)

REGISTRATION_ATTR = "promptopt_worker"
"""User attribute that marks a worker's registration trial."""
CLAIM_ATTR = "promptopt_claim"
"""User attribute that marks a claim on a study found empty (see :func:`plan_start`)."""
STALE_AFTER_S = 60.0
"""A worker on another machine whose heartbeat is older than this counts as gone."""
JOIN_WAIT_S = 60.0
"""How long a worker that lost the race to create a study waits for its settings."""
GRACE_S = 5.0
"""How long a worker waits for the settings of a study it found empty."""

def worker_seed(seed: int, index: int) -> int:
    """The search seed of worker ``index`` in a run with ``seed`` (worker 0: ``seed``)."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"promptopt-worker:{seed}:{index}".encode()).hexdigest()
    return int(digest[:8], 16) % 2**31


@dataclass
class Member:
    """One worker's place in a study.

    Attributes:
        index: The worker index (0: the study's first worker).
        seed: This worker's search seed.
        batch_seed: Seed of the minibatch stream (the study's seed for workers >= 1;
            None for worker 0, whose minibatches come from its one stream as in a lone run).
        registration: Number of its registration trial (-1 for worker 0).
    """

    index: int = 0
    seed: int = 0
    batch_seed: int | None = None
    registration: int = -1


def is_alive(attrs: StudyAttrs, index: int, record: Mapping[str, Any]) -> bool:
    """Whether worker ``index`` is running now (its process here, its heartbeat elsewhere)."""
    if record.get("status") != RunStatus.RUNNING:
        return False
    if on_this_host(record):
        return is_live_here(record)
    beat = attrs.heartbeat(index)
    return beat is not None and time.time() - beat < STALE_AFTER_S


def live_workers(attrs: StudyAttrs) -> list[int]:
    """Indexes of the workers running the study now."""
    return [k for k, r in sorted(attrs.worker_records().items()) if is_alive(attrs, k, r)]


def _check_same(study: str, stored: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    for key, option in shared_settings().items():
        if stored.get(key) != now.get(key):
            was, given = stored.get(key), now.get(key)
            if key == "start_template":
                was, given = (dict(v or {}).get("instruction") for v in (was, given))
            if key == "data_fingerprint":
                option, was, given = "--data", stored.get("data"), f"other rows ({given})"
            raise ConfigError(
                f"cannot join study {study!r} as another worker: its run has {option} {was!r}, "
                f"this one {given!r}. The workers of one study share its settings (only "
                "--seed and --api-base may differ): give the same options or another study name"
            )


def _create(store: Any, storage: str, study: str) -> bool | None:
    """Create ``study``: True if this call made it, False if another process just did,
    None if it existed before."""
    optuna = import_optuna()
    with storage_errors(storage, f"create study {study!r}"):
        if study in optuna.get_all_study_names(store):
            return None
        try:
            create_study(store, study)
        except optuna.exceptions.DuplicatedStudyError:
            return False
    return True


def _read(store: Any, storage: str, study: str) -> tuple[StudyAttrs, list[Any]]:
    """The study's user attributes and its trials."""
    with storage_errors(storage, f"read study {study!r}"):
        study_id = store.get_study_id_from_name(study)
        return (StudyAttrs(store.get_study_user_attrs(study_id)),
                list(store.get_all_trials(study_id, deepcopy=False)))


def _wait_for_run(
    store: Any, storage: str, study: str, seconds: float
) -> tuple[StudyAttrs, list[Any], bool]:
    """Poll ``study`` until it holds a run's settings or trials other than claims, for
    at most ``seconds``: its attributes, trials, and whether the settings came."""
    deadline = time.monotonic() + seconds
    while True:
        attrs, trials = _read(store, storage, study)
        ready = attrs.settings is not None and attrs.status is not None
        if ready or any(CLAIM_ATTR not in t.user_attrs for t in trials):
            return attrs, trials, ready
        if time.monotonic() >= deadline:
            return attrs, trials, False
        time.sleep(0.2)


def _mark(store: Any, storage: str, study: str, attr: str, doing: str
          ) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Add a marker trial (``PRUNED``, user attribute ``attr`` = this process) to
    ``study``: its number, this process, and the ``attr`` values of the marker trials
    numbered before it (Optuna numbers trials under a lock on the study)."""
    optuna = import_optuna()
    me = this_process()
    with storage_errors(storage, f"{doing} study {study!r}"):
        study_id = store.get_study_id_from_name(study)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={attr: me}
        )
        number = store.get_trial_number_from_id(store.create_new_trial(study_id, trial))
        before = [t.user_attrs[attr] for t in store.get_all_trials(study_id, deepcopy=False)
                  if attr in t.user_attrs and t.number < number]
    return number, me, before


def _claim(store: Any, storage: str, study: str) -> bool:
    """Claim the empty ``study`` with a trial; whether this process claimed it first
    (among claimants still alive, as far as this machine can tell)."""
    _, me, before = _mark(store, storage, study, CLAIM_ATTR, "claim")
    return not any(
        not on_this_host(other) or is_running(int(other.get("pid", -1)), other.get("started"))
        for other in before
    )


def plan_start(storage: str, study: str, settings: Mapping[str, Any], seed: int) -> Member:
    """Decide how a new run named ``study`` starts: as its first worker, or joining.

    A study that does not exist is created (worker 0). One that holds a run with the
    same settings that a live worker is running is joined (a registered worker >= 1).
    Otherwise a study holding a run is refused as before (:func:`check_new`: resume it
    or choose another name), and one without trials is reused (worker 0). A study
    that exists without a run's settings may be one another worker created an instant
    ago: its settings are waited for (:data:`JOIN_WAIT_S` after losing the race to
    create it, :data:`GRACE_S` for a study found empty).

    Raises:
        ConfigError: the study holds a run nobody is running, or a live run with
            other settings.
    """
    store = open_storage(storage)
    created = _create(store, storage, study)
    if created:
        return Member(seed=seed)
    wait = JOIN_WAIT_S if created is False else GRACE_S
    attrs, trials, ready = _wait_for_run(store, storage, study, wait)
    if created is None and not ready and all(CLAIM_ATTR in t.user_attrs for t in trials):
        # Made empty beforehand: the first live claimant is worker 0, the others join it.
        if _claim(store, storage, study):
            return Member(seed=seed)
        attrs, trials, ready = _wait_for_run(store, storage, study, JOIN_WAIT_S)
        created = False
    if created is False and not ready:
        raise ConfigError(
            f"study {study!r} was created by another process that did not start its run "
            f"within {JOIN_WAIT_S:.0f} s; start this worker again, or use another study name"
        )
    stored = attrs.settings
    if stored is not None and live_workers(attrs):
        _check_same(study, stored, settings)
        return register(store, storage, study, seed, int(stored["seed"]))
    check_new(storage, study)
    return Member(seed=seed)


def register(store: Any, storage: str, study: str, seed: int, study_seed: int) -> Member:
    """Register one more worker of ``study`` (a registration trial) and store its state.

    Args:
        store: The opened storage (:func:`~promptopt.tracking._tracker.open_storage`).
        storage: Its URL (for messages).
        study: The study to join.
        seed: The ``--seed`` this worker was given (its stream derives from it).
        study_seed: The study's stored seed (the workers' shared minibatch stream).
    """
    number, me, before = _mark(store, storage, study, REGISTRATION_ATTR, "register a worker in")
    index = 1 + len(before)
    member = Member(index=index, seed=worker_seed(seed, index), batch_seed=study_seed,
                    registration=number)
    with storage_errors(storage, f"register a worker in study {study!r}"):
        store.set_study_user_attr(
            store.get_study_id_from_name(study), StudyAttrs.worker_key(index),
            {**me, "status": "starting", "seed": member.seed, "registration": number},
        )
    return member


def resume_member(study: str, attrs: StudyAttrs) -> Member | None:
    """The worker a ``--resume`` of a several-worker study continues, or None.

    None for a study one worker ran (resumed as before) and for a study whose workers
    all finished (its stored result is shown). Otherwise the lowest-index worker that
    stopped before finishing (interrupted, failed, or killed: not alive).

    Raises:
        ResumeError: every unfinished worker is alive (nothing to resume).
    """
    if not attrs.has_workers():
        return None
    records = attrs.worker_records()
    unfinished = {k: r for k, r in records.items() if r.get("status") != RunStatus.FINISHED}
    if not unfinished:
        return None
    dead = sorted(k for k, r in unfinished.items() if not is_alive(attrs, k, r))
    if not dead:
        who = ", ".join(f"worker {k} (process {r.get('pid')} on {r.get('host')})"
                        for k, r in sorted(unfinished.items()))
        raise ResumeError(
            f"study {study!r} has nothing to resume: {who} still running; start another "
            "worker without --resume to join them"
        )
    index = dead[0]
    seed = int((attrs.settings or {})["seed"])
    if index == 0:
        return Member(seed=seed)
    record = records[index]
    return Member(index=index, seed=int(record.get("seed", worker_seed(seed, index))),
                  batch_seed=seed, registration=int(record.get("registration", -1)))


def _pick(results: Mapping[int, Mapping[str, Any]], settings: Mapping[str, Any]
          ) -> tuple[dict[str, Any], str]:
    """The study's result from the finished workers' results, and a line saying how.

    Each worker's chosen template is compared with the start again at the level
    corrected for all the workers' finalists (:func:`choose_among_workers`); when none
    is credible there, the result is the starting template (a worker's result that is
    the start, else the start's scores from the lowest worker's). Results recorded
    without the final choice's figures (older studies) fall back to the highest
    validation mean.
    """
    if any(not isinstance(r.get("final_choice"), Mapping) for r in results.values()):
        best = max(results, key=lambda k: (float(results[k]["val_score"]), -k))
        return {**results[best], "found_by": best}, ""
    records: dict[int, Mapping[str, Any]] = {k: r["final_choice"] for k, r in results.items()}
    selection = Selection.from_dict(settings.get("selection"))
    pick, line = choose_among_workers(records, selection, seed=int(settings.get("seed", 0)))
    if pick is None:
        keepers = [k for k, rec in sorted(records.items()) if not rec.get("chosen")]
        if not keepers:
            return _start_result(results[min(results)], selection.confidence, line), line
        pick = keepers[0]
    return {**results[pick], "found_by": pick}, line


def _start_result(base: Mapping[str, Any], confidence: float, why: str) -> dict[str, Any]:
    """``base`` (a worker's result) turned into the result that is its starting template."""

    def zero(gain: Any) -> dict[str, Any] | None:
        n = (gain or {}).get("n")
        return None if n is None else GainInterval.none(confidence, int(n)).to_dict()

    start = base["start_template"]
    return {
        **base, "template": start, "template_id": Template.from_dict(start).id,
        "val_score": base["start_val_score"], "test_score": base["start_test_score"],
        "test_score_without_suffix": None, "test_metrics": base.get("start_test_metrics") or {},
        "val_gain": zero(base.get("val_gain")), "test_gain": zero(base.get("test_gain")),
        "why": why, "found_by": None,
    }


def _summary(results: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    keys = ("template_id", "val_score", "test_score", "trials", "budget_spent", "stopped")
    return {str(k): {key: r.get(key) for key in keys} for k, r in sorted(results.items())}


def publish_result(tracker: Tracker, member: Member, own: RunResult) -> RunResult:
    """Store a worker's result on the study; return what this worker reports.

    A lone run stores its result as ``result``, as before. With several workers,
    each stores ``result:<k>``, and ``result`` becomes the best of all finished
    workers' results (plus ``found_by`` and a ``workers`` summary); the returned
    result carries that best template and its scores with this worker's own usage,
    trials and budget.
    """
    attrs = StudyAttrs(tracker.attrs())
    if member.index == 0 and not attrs.has_workers():
        StudyAttrs.write_result(tracker, own.to_dict())
        return own
    own.worker, own.workers = member.index, {}
    StudyAttrs.write_result(tracker, own.to_dict(), worker=member.index)
    seen: set[int] = set()
    for _ in range(10):  # until no other worker's result appears meanwhile
        attrs = StudyAttrs(tracker.attrs())
        results = attrs.worker_results()
        if 0 in results and not attrs.has_own_result(0):  # a first worker that finished alone
            StudyAttrs.write_result(tracker, {**results[0], "worker": 0, "workers": {}},
                                    worker=0)
        merged, how = _pick(results, attrs.settings or {})
        merged["workers"] = _summary(results)
        StudyAttrs.write_result(tracker, merged)
        if set(results) == seen:
            break
        seen = set(results)
    chosen = RunResult.from_dict(merged, storage=tracker.storage_url)
    for name in ("template", "val_score", "test_score", "start_template", "start_val_score",
                 "start_test_score", "test_score_without_suffix", "test_metrics", "val_gain",
                 "test_gain", "why"):
        setattr(own, name, getattr(chosen, name))
    best = merged["found_by"]
    own.found_by, own.workers = best, merged["workers"]
    mine = float(results[member.index]["val_score"])
    own.notes.append(
        f"worker {member.index} of study {own.study} ({len(results)} finished so far): "
        + ("this worker's template is the study's result" if best == member.index else
           "the study's result is the starting template" if best is None else
           f"the study's result was found by worker {best} (val "
           f"{float(merged['val_score']):.4f}; this worker's own: {mine:.4f})")
    )
    if how:
        own.notes.append(how)
    return own
