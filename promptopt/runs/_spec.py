"""The typed description of a run: which task on which data, which models, which search.

A :class:`RunSpec` holds three frozen, keyword-only parts, each field named as the
:func:`promptopt.run` argument it comes from:

- :class:`TaskSpec`: ``task``, ``data``, ``task_options``, ``scorer``, the split sizes
  ``train``/``val``/``test``, ``split_seed``, ``skip_bad_rows``;
- :class:`LLMSpec`: ``model``, ``proposer``, ``api_base``, ``timeout``, ``concurrency``;
- :class:`SearchSpec`: ``method``, ``settings`` (the optimizer's), ``budget``, ``seed``,
  ``start``, ``suffix``, ``max_errors``, ``selection`` (the final choice's settings,
  :class:`~promptopt.search.Selection`).

Each field's metadata (:class:`Option`) says how the command line spells it, whether a
resumed run may change it (``api_base``, ``timeout``, ``concurrency``, ``max_errors``: where and how
patiently the model is called, not what the run does) and which stored setting the
workers of one study must share. :meth:`RunSpec.to_settings` writes the JSON stored on
a run's study and :meth:`RunSpec.from_settings` reads it back; live objects (a scorer
shared by a comparison, progress callbacks, the cache folder) travel apart from the
spec, in :class:`~promptopt.runs._runner.Live`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from promptopt.data import Splits
from promptopt.errors import ConfigError, PromptoptError, ResumeError
from promptopt.evaluator import DEFAULT_MAX_ERRORS
from promptopt.llm import DEFAULT_CONCURRENCY, DEFAULT_MODEL, DEFAULT_TIMEOUT, proposer_for
from promptopt.search import Selection
from promptopt.tasks import Task
from promptopt.template import Template
from promptopt.version import __version__

F = TypeVar("F", bound=Callable[..., Any])
SETTINGS_VERSION = 2
"""The version of the stored settings' form (:meth:`RunSpec.to_settings`): 2 since it is
written with this number; a study without one holds form 1 (promptopt 0.1.0 on), which
reads the same way. A study written in a newer form than this one is refused on resume."""
BUNDLED = "bundled sample"
"""What the stored ``data`` setting says when the task's bundled sample was used."""


@dataclass(frozen=True)
class Option:
    """What a spec field means outside Python (the metadata of every field).

    Attributes:
        flag: The command-line option (``--model``).
        help: What the setting does: the command-line help and the library's
            documentation of the argument of the same name.
        on_resume: ``"keep"`` (a resumed run must be given the stored value, if any) or
            ``"override"`` (a resume may change it).
        shared_as: The stored setting the workers of one study must agree on (None:
            it may differ between workers).
        short: A one-letter command-line alias (``-m``), or None.
        minimum: The smallest value the command line accepts, or None.
    """

    flag: str
    help: str = ""
    on_resume: str = "keep"
    shared_as: str | None = None
    short: str | None = None
    minimum: int | None = None


def _field(default: Any, flag: str, help: str, *, on_resume: str = "keep",
           shared_as: str | None = None, factory: Any = None, short: str | None = None,
           minimum: int | None = None) -> Any:
    meta = {"option": Option(flag, help, on_resume, shared_as, short, minimum)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """The task, its data and splits, and what judges its predictions."""

    task: str = _field("prompt-recovery", "--task", "Registered task name.", shared_as="task",
                       short="-t")
    data: str | None = _field(None, "--data", "Dataset (CSV, JSONL, Parquet). Default: the "
                              "task's bundled sample.", shared_as="data_fingerprint",
                              short="-d")
    task_options: Mapping[str, Any] = _field(
        None, "--task-option", "Other task option KEY=VALUE (JSON values), repeatable, e.g. "
        "answer=full (csv: keep the whole answer, not its first line). In Python, a dict of "
        "the task's options, e.g. for task csv {'inputs': ['a', 'b'], 'target': 'y', "
        "'metric': 'exact'} (a metric may be a function).",
        shared_as="task_options", factory=dict)
    scorer: str = _field("auto", "--scorer", "Scorer: auto, minilm, sentence-t5, a "
                         "sentence-transformers name or path.", shared_as="scorer")
    train: int | float = _field(16, "--train", "Train split size (count or fraction).",
                                shared_as="splits")
    val: int | float = _field(12, "--val", "Validation split size (count or fraction).",
                              shared_as="splits")
    test: int | float | None = _field(20, "--test", "Test split size (count or fraction; "
                                      "from Python also None: the rest).",
                                      shared_as="splits")
    split_seed: int = _field(0, "--split-seed", "Seed of the train/val/test split (kept "
                             "fixed across search seeds).", shared_as="split_seed")
    skip_bad_rows: bool = _field(False, "--skip-bad-rows", "Skip data rows with empty or "
                                 "non-text cells or duplicate ids (listed in a warning) "
                                 "instead of stopping at the first.",
                                 shared_as="skip_bad_rows")


@dataclass(frozen=True, kw_only=True)
class LLMSpec:
    """The recovery and proposer LLMs, and how they are reached."""

    model: str = _field(DEFAULT_MODEL, "--model", "Recovery LLM: a LiteLLM model string "
                        "or llamacpp/<name>.", shared_as="model")
    proposer: str | None = _field(None, "--proposer", "LLM that writes new instructions "
                                  "(default: the embedded default proposer with the default "
                                  "--model, else --model).", shared_as="proposer")
    api_base: str | None = _field(None, "--api-base", "Provider URL for both LLMs, e.g. an "
                                  "OpenAI-compatible server (vLLM, llama.cpp) at "
                                  "http://HOST:PORT/v1 with --model openai/NAME.",
                                  on_resume="override")
    timeout: float = _field(DEFAULT_TIMEOUT, "--timeout", "Seconds per LLM request before "
                            "it times out (and is retried).", on_resume="override")
    concurrency: int = _field(DEFAULT_CONCURRENCY, "--concurrency", "LLM requests in flight "
                              "at once for a remote provider (the embedded model answers "
                              "one at a time).", on_resume="override", minimum=1)


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """The search: method, its settings, budget, seed, and where it starts."""

    method: str = _field("opro", "--method", "Optimizer (see `promptopt list`).",
                         shared_as="method", short="-m")
    settings: Mapping[str, Any] = _field(None, "--set", "Optimizer setting KEY=VALUE (JSON "
                                         "values), repeatable: the keyword arguments of "
                                         "the optimizer's class.",
                                         shared_as="method_settings", factory=dict)
    budget: int = _field(100, "--budget", "Max LLM calls for the search, proposer calls "
                         "included (the final test scoring is extra).", shared_as="budget")
    seed: int = _field(0, "--seed", "Search seed (same seed + cache = same result, no new "
                       "calls).")
    start: Template | str | None = _field(None, "--start", "Starting template: a .json/.txt "
                                          "file, the instruction itself or a Template.",
                                          shared_as="start_template")
    suffix: bool = _field(False, "--suffix", "Append a learned mean-prompt string to every "
                          "prediction of the final template; reports the test score with "
                          "and without it.", shared_as="suffix")
    max_errors: int = _field(DEFAULT_MAX_ERRORS, "--max-errors", "Failed evaluations "
                             "tolerated per run (each recorded as a failed trial, the search "
                             "goes on); one more stops the run, to resume later.",
                             on_resume="override")
    selection: Mapping[str, Any] = _field(
        None, "--select", "Final-choice setting KEY=VALUE, repeatable: confidence (default "
        "0.9), val_first (grow validation from this many examples for close finalists), "
        "reserve_share (0.5), resamples (2000). See docs/guides/methods.md.",
        shared_as="selection", factory=dict)

    def final_choice(self) -> Selection:
        """The final choice's settings (:class:`~promptopt.search.Selection`), validated.

        Raises:
            ConfigError: an unknown or bad selection setting.
        """
        return Selection.from_dict(self.selection)


PARTS: dict[str, type] = {"task": TaskSpec, "llm": LLMSpec, "search": SearchSpec}
"""The parts of a :class:`RunSpec`, by attribute."""
FIELDS: dict[str, dataclasses.Field[Any]] = {
    f.name: f for cls in PARTS.values() for f in dataclasses.fields(cls)
}
"""Every spec field by its (flat, :func:`promptopt.run` argument) name."""
_PART_OF = {f.name: part for part, cls in PARTS.items() for f in dataclasses.fields(cls)}


def option(name: str) -> Option:
    """The :class:`Option` metadata of field ``name``."""
    return FIELDS[name].metadata["option"]  # type: ignore[no-any-return]


def default(name: str) -> Any:
    """The default value of field ``name``."""
    f = FIELDS[name]
    if f.default is dataclasses.MISSING:
        return f.default_factory()  # type: ignore[misc,operator]
    return f.default


OVERRIDABLE = frozenset(n for n in FIELDS if option(n).on_resume == "override")
"""Fields a resumed run may change."""
TASK_OPTION_FLAGS = {"inputs": "--inputs", "target": "--target", "metric": "--metric"}
"""Task options with command-line options of their own (others: ``--task-option KEY=VALUE``)."""


def shared_settings() -> dict[str, str]:
    """Stored settings every worker of a study must share, with the options that set them."""
    flags: dict[str, list[str]] = {}
    for name in FIELDS:
        key = option(name).shared_as
        if key is not None:
            flags.setdefault(key, []).append(option(name).flag)
    # the data fingerprint last: other splits change it too, and name the option better
    order = sorted(flags, key=lambda key: key == "data_fingerprint")
    return {key: "/".join(flags[key]) for key in order}


def data_fingerprint(splits: Splits) -> str:
    """A hash of the split examples (ids, inputs, targets, in order)."""
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        for e in getattr(splits, name):
            item = [name, e.id, sorted(e.inputs.items()), e.target]
            digest.update(json.dumps(item, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that defines a run, JSON-safe (see the module)."""

    task: TaskSpec = field(default_factory=TaskSpec)
    llm: LLMSpec = field(default_factory=LLMSpec)
    search: SearchSpec = field(default_factory=SearchSpec)

    @classmethod
    def from_args(cls, **args: Any) -> RunSpec:
        """A spec from :func:`promptopt.run` arguments (flat names; the rest default).

        Raises:
            ConfigError: an unknown name (the message lists the valid ones).
        """
        unknown = sorted(set(args) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown run setting(s) {unknown}; valid: {', '.join(FIELDS)}")
        parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for name, value in args.items():
            if name in ("task_options", "settings", "selection"):
                value = dict(value or {})
            elif name == "data" and value is not None:
                value = str(value)
            parts[_PART_OF[name]][name] = value
        return cls(**{part: PARTS[part](**kw) for part, kw in parts.items()})

    def args(self) -> dict[str, Any]:
        """The spec as flat :func:`promptopt.run` arguments."""
        return {name: getattr(getattr(self, _PART_OF[name]), name) for name in FIELDS}

    def __getitem__(self, name: str) -> Any:
        return getattr(getattr(self, _PART_OF[name]), name)

    def replace(self, **args: Any) -> RunSpec:
        """A copy with some fields (flat names) changed."""
        return RunSpec.from_args(**{**self.args(), **args})

    def to_settings(
        self, task: Task, method_settings: Mapping[str, Any], start: Template
    ) -> dict[str, Any]:
        """The settings stored on the run's study (JSON-ready; what a resume reruns with).

        Args:
            task: The task built from this spec (resolved scorer and split sizes).
            method_settings: The optimizer's settings (``get_params()``).
            start: The starting template.
        """
        t, m, s = self.task, self.llm, self.search
        task_options = task.get_params()
        metric = dict(t.task_options).get("metric")
        if metric is not None and "metric" not in task_options:  # a metric replacing the scorer
            task_options["metric"] = metric if isinstance(metric, str) else task.scorer_name
        return {
            "method": s.method,
            "method_settings": dict(method_settings),
            "task": t.task,
            "task_options": task_options,
            "data": t.data if t.data is not None else BUNDLED,
            "data_path": str(Path(t.data).resolve()) if t.data is not None else None,
            "data_fingerprint": data_fingerprint(task.splits),
            "model": m.model,
            "proposer": proposer_for(m.model, m.proposer),
            "api_base": m.api_base,
            "max_errors": s.max_errors,
            "timeout": m.timeout,
            "concurrency": m.concurrency,
            "scorer": task.scorer_name,
            "scorer_option": t.scorer,
            "budget": s.budget,
            "seed": s.seed,
            "splits": task.splits.sizes(),
            "split_request": {"train": t.train, "val": t.val, "test": t.test},
            "split_seed": t.split_seed,
            "skip_bad_rows": t.skip_bad_rows,
            "suffix": s.suffix,
            "selection": dict(s.selection),
            "start_template": start.to_dict(),
            "promptopt_version": __version__,
            "settings_version": SETTINGS_VERSION,
        }

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RunSpec:
        """The spec of a run from its stored settings (also those of earlier versions).

        Raises:
            ResumeError: the settings lack something a run needs, or were written in a
                newer form than this version of promptopt reads.
        """
        version = settings.get("settings_version", 1)
        if not isinstance(version, int) or version > SETTINGS_VERSION:
            raise ResumeError(
                f"the study's settings are in form {version!r}, written by a newer promptopt "
                f"({settings.get('promptopt_version', 'unknown version')}); this one "
                f"({__version__}) reads forms up to {SETTINGS_VERSION}: upgrade promptopt"
            )
        try:
            data = settings.get("data_path") or (
                None if settings["data"] == BUNDLED else settings["data"]
            )
            sizes = settings["splits"]
            return cls.from_args(
                method=settings["method"],
                settings=_with_legacy(settings["method"], settings.get("method_settings")),
                task=settings["task"],
                task_options=dict(settings.get("task_options") or {}),
                data=data,
                model=settings["model"],
                proposer=settings["proposer"],
                scorer=_scorer_option(settings),
                budget=settings["budget"],
                seed=settings["seed"],
                train=sizes["train"],
                val=sizes["val"],
                test=sizes["test"],
                split_seed=settings["split_seed"],
                skip_bad_rows=bool(settings.get("skip_bad_rows", False)),
                start=Template.from_dict(settings["start_template"], source="stored settings"),
                suffix=bool(settings.get("suffix", False)),
                api_base=settings.get("api_base"),
                max_errors=settings.get("max_errors", DEFAULT_MAX_ERRORS),
                timeout=settings.get("timeout", DEFAULT_TIMEOUT),
                selection=dict(settings.get("selection") or {}),
                concurrency=settings.get("concurrency", DEFAULT_CONCURRENCY),
            )
        except (KeyError, TypeError) as exc:
            raise ResumeError(
                f"the study's stored settings are incomplete (missing {exc})"
            ) from None


def _with_legacy(method: str, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored run's method settings, with the earlier behaviour's value of every setting
    added since it was stored (the optimizer's ``legacy_settings``)."""
    from promptopt.registry import optimizers

    try:
        legacy = optimizers.get(method).legacy_settings
    except PromptoptError:  # an unknown method is reported where the run is built
        legacy = {}
    return {**legacy, **dict(stored or {})}


def _scorer_option(settings: Mapping[str, Any]) -> str:
    stored = settings.get("scorer_option")
    if isinstance(stored, str):
        return stored
    name = str(settings.get("scorer", "auto"))
    return "hashing" if name.startswith("hashing-bow") else name


ARGUMENTS_MARK = "<run settings>"
"""The line of a docstring's ``Args:`` that :func:`spec_arguments` replaces with the
run settings' documentation."""


def spec_arguments(*names: str) -> Callable[[F], F]:
    """Declare that a function takes the spec fields ``names`` as keyword arguments.

    The function receives them in its ``**fields`` (only those the caller passed); its
    signature (``help()``, ``inspect.signature``) gains each as a keyword-only argument
    with the field's default, and its docstring's :data:`ARGUMENTS_MARK` line becomes
    each field's help. So a setting's default and meaning are written once, on the spec.
    Check the fields a call passed with :func:`passed_fields`.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
        own = {p.name for p in params}
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default(name),
                                   annotation=FIELDS[name].type)
                 for name in names if name not in own]
        keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        positional = [p for p in params if p not in keyword]
        fn.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=positional + added + keyword)
        fn.spec_fields = tuple(names)  # type: ignore[attr-defined]
        doc = fn.__doc__ or ""
        if ARGUMENTS_MARK in doc:
            indent = doc[: doc.index(ARGUMENTS_MARK)].rsplit("\n", 1)[-1]
            lines = [textwrap.fill(f"{name}: {option(name).help}", 88 - len(indent),
                                   subsequent_indent="    ")
                     for name in names if name not in own]
            text = "\n".join(lines).replace("\n", f"\n{indent}")
            doc = doc.replace(ARGUMENTS_MARK, text)
        fn.__doc__ = doc
        return fn

    return decorate


def passed_fields(fn: Callable[..., Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields a call of ``fn`` (decorated with :func:`spec_arguments`) passed in
    its ``**fields``.

    Raises:
        ConfigError: a name that is not one of ``fn``'s fields (the message lists them).
    """
    allowed = getattr(fn, "spec_fields", ())
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ConfigError(f"{fn.__name__}() got unknown setting(s) {unknown}; valid: "
                          f"{', '.join(allowed)}")
    return dict(fields)
