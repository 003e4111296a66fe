"""Test doubles: a scripted LLM behind the ``fake/`` provider, and a setup built on it.

``FakeLLM`` is served through LiteLLM as the ``fake/<name>`` provider, so tests run
the real client (cache, budget, usage, retries) with scripted replies::

    fake = FakeLLM(lambda prompt, params: "Make it formal.")
    llm = LLM(fake.model)

Importing this module registers the ``fake`` provider with
:func:`promptopt.llm.register_provider`; the product never imports it. ``FakeSetup``
builds a task on the bundled sample with the model-free
:class:`~promptopt.scoring.HashingScorer`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from promptopt.errors import UnknownModelError
from promptopt.llm import register_provider
from promptopt.scoring import HashingScorer, stable_int

Reply = Callable[[str, dict[str, Any]], str]
LabelScores = Callable[[str, list[str]], dict[str, float]]
_FAKES: dict[str, FakeLLM] = {}
_counter = itertools.count(1)
_WORD = re.compile(r"[a-z0-9']+")

_PROPOSAL_WORDS = [
    "formal", "casual", "poem", "shorter", "pirate", "summary", "child", "email",
    "bullet", "list", "tweet", "shakespeare", "funny", "sad", "story", "letter",
]


def default_reply(prompt: str, params: dict[str, Any]) -> str:
    """A deterministic reply that depends on the prompt, seed and temperature.

    Proposer requests (prompts that mention ``<INS>``) get a new instruction in
    ``<INS>`` tags; anything else gets a short "rewrite prompt" whose words come from
    the prompt, so different templates give different predictions.
    """
    h = stable_int(prompt, params.get("seed"), params.get("temperature"))
    if "<INS>" in prompt:
        words = [_PROPOSAL_WORDS[(h >> (4 * i)) % len(_PROPOSAL_WORDS)] for i in range(3)]
        return f"<INS>Rewrite the text to be {words[0]}, {words[1]} and {words[2]}.</INS>"
    first_line = prompt.strip().split("\n", 1)[0].lower()
    words = _WORD.findall(first_line)
    picked = [words[(h >> (3 * i)) % len(words)] for i in range(3)] if words else ["text"]
    return "Rewrite this " + " ".join(picked) + "."


def default_label_logprobs(prompt: str, labels: list[str]) -> dict[str, float]:
    """Deterministic first-token log-probs of ``labels`` that depend on the whole prompt.

    Each label gets a logit in [-3, 3) hashed from the prompt and the label; the rest
    of the vocabulary shares logit 0, so the labels' probabilities sum to less than 1
    (as a real model's do) and different templates give different predictions.
    """
    logits = {label: (stable_int(prompt, label) % 6000) / 1000.0 - 3.0 for label in labels}
    log_norm = float(np.log(1.0 + sum(np.exp(v) for v in logits.values())))
    return {label: v - log_norm for label, v in logits.items()}


class FakeLLM:
    """Scripted replies behind the LiteLLM model string ``fake/<name>``.

    Args:
        replies: ``fn(prompt, params) -> str``, a list of strings served in turn
            (cycling), or None for :func:`default_reply`.
        name: Model name (unique per instance by default).
        fail_first: Raise a transient error on the first N calls (to test retries).
        label_scores: ``fn(prompt, labels) -> {label: logprob}`` answering
            :meth:`LLM.label_logprobs <promptopt.llm.LLM.label_logprobs>` (default
            :func:`default_label_logprobs`); such calls are recorded too.
        chat: Whether it stands for a chat model (``LLM.is_chat``; default, as for any
            provider that does not say) or a base model: callers that render or ask
            differently for the two take that path.
    """

    def __init__(
        self,
        replies: Reply | Sequence[str] | None = None,
        *,
        name: str | None = None,
        fail_first: int = 0,
        label_scores: LabelScores | None = None,
        chat: bool = True,
    ) -> None:
        self.name = name or f"fake-{next(_counter)}"
        self.chat = chat
        if replies is None:
            self._reply: Reply = default_reply
        elif callable(replies):
            self._reply = replies
        else:
            cycle = itertools.cycle(list(replies))
            self._reply = lambda prompt, params: next(cycle)
        self.fail_first = fail_first
        self.label_scores: LabelScores = label_scores or default_label_logprobs
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        _FAKES[self.name] = self

    @property
    def model(self) -> str:
        """The LiteLLM model string to pass to :class:`~promptopt.llm.LLM`."""
        return f"fake/{self.name}"

    def prompts(self) -> list[str]:
        """The prompt text of every call so far."""
        return [c["prompt"] for c in self.calls]

    def _record(self, prompt: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> None:
        self.calls.append({"prompt": prompt, "messages": messages, "params": dict(params)})
        if len(self.calls) <= self.fail_first:
            import litellm

            raise litellm.RateLimitError(
                message="fake rate limit", llm_provider="fake", model=self.model
            )

    def __call__(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            self._record(prompt, messages, params)
            text = self._reply(prompt, params)
        return {
            "text": text,
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(text.split()),
        }


    def label_logprobs(self, messages: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
        """Scripted label log-probs (recorded as a call with ``params={"labels": ...}``)."""
        prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            self._record(prompt, messages, {"labels": list(labels)})
            scores = self.label_scores(prompt, list(labels))
        return {"logprobs": {label: float(scores[label]) for label in labels},
                "prompt_tokens": len(prompt.split()), "completion_tokens": 0}


def _fake(name: str) -> FakeLLM:
    fake = _FAKES.get(name)
    if fake is None:
        raise UnknownModelError(f"no FakeLLM named {name!r} in this process")
    return fake


def fake_generate(
    name: str, messages: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Entry point of the ``fake`` LiteLLM provider."""
    return _fake(name)(messages, params)


def fake_label_logprobs(
    name: str, messages: list[dict[str, Any]], labels: list[str]
) -> dict[str, Any]:
    """Entry point of the ``fake`` provider's label log-probs (:mod:`promptopt.llm._logprobs`)."""
    return _fake(name).label_logprobs(messages, labels)


class FakeSetup:
    """Everything an optimizer needs, on the bundled sample, with fake LLM and scorer.

    Args:
        task: A registered task name (it runs on its bundled sample), or a task with its
            splits (e.g. a ``CSVTask``; ``train``, ``val`` and ``test`` are then ignored).
        budget: The shared LLM-call budget.
        replies: Scripted replies for the recovery LLM (see :class:`FakeLLM`).
        proposer_replies: Scripted replies for the proposer (default: same fake).
        train, val, test: Split sizes.
        cache_dir: Disk cache folder (None: no cache).
        storage: Optuna storage URL to record trials into (None: not recorded).
        fake_name: Name of the recovery FakeLLM (the same name in two setups means
            the same model string, so they share cache entries).
        label_scores: Scripted label log-probs of the recovery LLM (see :class:`FakeLLM`).
        proposer_chat: Whether the proposer (given ``proposer_replies``) stands for a chat
            model (default) or a base model.
    """

    def __init__(
        self,
        *,
        task: Any = "prompt-recovery",
        budget: int | None = 100,
        replies: Reply | Sequence[str] | None = None,
        proposer_replies: Reply | Sequence[str] | None = None,
        train: int = 12,
        val: int = 6,
        test: int = 6,
        cache_dir: str | None = None,
        storage: str | None = None,
        study: str = "test",
        method: str = "test",
        fake_name: str | None = None,
        label_scores: LabelScores | None = None,
        proposer_chat: bool = True,
    ) -> None:
        from promptopt.data import sample_path
        from promptopt.evaluator import Evaluator
        from promptopt.llm import LLM, Budget, DiskCache, Usage
        from promptopt.registry import tasks
        from promptopt.tracking import Tracker

        if isinstance(task, str):
            cls = tasks.get(task)
            task = cls.from_file(sample_path(cls.sample), scorer=HashingScorer(), train=train,
                                 val=val, test=test, seed=0)
        self.task = task
        self.fake = FakeLLM(replies, name=fake_name, label_scores=label_scores)
        self.proposer_fake = (self.fake if proposer_replies is None
                              else FakeLLM(proposer_replies, chat=proposer_chat))
        cache = DiskCache(cache_dir, "llm") if cache_dir else None
        self.budget, usage = Budget(budget), Usage()
        self.llm = LLM(self.fake.model, cache=cache, budget=self.budget, usage=usage)
        self.proposer = LLM(
            self.proposer_fake.model, cache=cache, budget=self.budget, usage=usage
        )
        self.tracker = Tracker(storage, study) if storage else None
        self.evaluator = Evaluator(self.task, self.llm, tracker=self.tracker, method=method)

    @property
    def calls(self) -> int:
        """Requests the fakes received (recovery and proposer)."""
        n = len(self.fake.calls)
        return n if self.proposer_fake is self.fake else n + len(self.proposer_fake.calls)

    def optimize(self, optimizer: Any, seed: int = 0) -> Any:
        """Run ``optimizer`` on this setup."""
        return optimizer.optimize(self.task, self.evaluator, self.proposer, seed=seed)


register_provider("fake", fake_generate, label_logprobs=fake_label_logprobs,
                  is_chat=lambda name: _fake(name).chat)
