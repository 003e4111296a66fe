"""Saved KV states of the prompt prefixes that many prompts share.

A search evaluates many candidate instructions on the same examples. When a task puts
the example's texts before the instruction, every candidate's prompt for one example
starts with the same tokens, and their KV state can be restored rather than evaluated
again. :class:`PrefixStates` finds those shared prefixes by itself: each prompt is
compared with the recent ones, and where it shares a long prefix with one of them that
no saved state covers yet (a *branch point*: the end of an example two candidates
share), the engine saves the state there while it evaluates the prompt; later prompts
that start the same way restore it. Nothing needs to say where an example ends, and a
changed text can never hit a stale state: a state is keyed by its exact tokens.

The store is bounded (:attr:`PrefixStates.limit` bytes, least recently used out) and
holds only what was saved at a branch point; the live context of the last prompt is
reused as before (``reusable_prefix`` in ``_embedded``).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_LIMIT_MB = 384
"""Default bound of the saved states, all models together (``PROMPTOPT_STATE_CACHE_MB``;
0 turns the store off). A 300-token example costs ~3.7 MB of KV on Qwen2.5-Coder 0.5B,
~5.5 MB on Gemma 3 270M and ~8.6 MB on the 1.5B."""

RECENT = 256
"""How many recent prompts a new one is compared with to find a branch point."""


def limit_bytes() -> int:
    """The store's bound in bytes, from ``PROMPTOPT_STATE_CACHE_MB`` (default
    :data:`DEFAULT_LIMIT_MB`)."""
    raw = os.environ.get("PROMPTOPT_STATE_CACHE_MB", str(DEFAULT_LIMIT_MB))
    try:
        return max(0, int(float(raw) * 1024 * 1024))
    except ValueError:
        from promptopt.errors import ConfigError

        raise ConfigError(
            f"PROMPTOPT_STATE_CACHE_MB={raw!r} is not a number of megabytes"
        ) from None


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


@dataclass
class Saved:
    """One saved state: the tokens it holds the KV of, and the sequence's bytes."""

    tokens: np.ndarray
    data: bytes


class PrefixStates:
    """Saved KV states of shared prefixes, per model, least recently used out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._saved: OrderedDict[tuple[int, bytes], Saved] = OrderedDict()
        self._recent: dict[int, deque[np.ndarray]] = {}
        self.hits = 0
        self.saves = 0
        self.evictions = 0
        self.peak_bytes = 0

    def best(self, model: int, tokens: np.ndarray) -> tuple[Saved | None, int]:
        """The saved state of ``model`` that shares the most leading tokens with
        ``tokens``, and how many it shares (0 and None when none does)."""
        found, most = None, 0
        for (owner, _), saved in self._saved.items():
            if owner != model:
                continue
            n = common_prefix(saved.tokens, tokens)
            if n > most:
                found, most = saved, n
        return found, most

    def branch(self, model: int, tokens: np.ndarray) -> int:
        """The most leading tokens ``tokens`` shares with one of ``model``'s recent
        prompts (0 when none); then ``tokens`` joins them."""
        recent = self._recent.setdefault(model, deque(maxlen=RECENT))
        most = max((common_prefix(seen, tokens) for seen in recent), default=0)
        recent.append(tokens)
        return most

    def use(self, model: int, saved: Saved) -> None:
        """Mark ``saved`` as just used (last out)."""
        self._saved.move_to_end((model, saved.tokens.tobytes()))
        self.hits += 1

    def put(self, model: int, tokens: Sequence[int], data: bytes) -> None:
        """Keep ``data`` as the state of ``tokens``; the least recently used states go
        while the store is over its limit (a state larger than the limit is not kept)."""
        if len(data) > self.limit:
            return
        arr = np.asarray(tokens, dtype=np.intc)
        key = (model, arr.tobytes())
        old = self._saved.pop(key, None)
        if old is not None:
            self.bytes -= len(old.data)
        self._saved[key] = Saved(arr, data)
        self.bytes += len(data)
        self.saves += 1
        while self.bytes > self.limit:
            _, gone = self._saved.popitem(last=False)
            self.bytes -= len(gone.data)
            self.evictions += 1
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def __len__(self) -> int:
        return len(self._saved)


def save_sequence(llama: Any) -> bytes:
    """The KV state of ``llama``'s sequence 0 (the one the engine evaluates), as bytes."""
    import ctypes

    import llama_cpp

    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
    if not n:
        raise RuntimeError("llama.cpp could not copy the sequence state")
    return bytes(buf[:n])


def load_sequence(llama: Any, data: bytes, tokens: np.ndarray, keep: int) -> None:
    """Restore a state saved by :func:`save_sequence` into an emptied context, holding
    ``tokens``, and keep its first ``keep`` of them (the next evaluation removes the
    rest)."""
    import ctypes

    import llama_cpp

    llama._ctx.kv_cache_clear()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buf, len(data), 0) != len(data):
        llama._ctx.kv_cache_clear()
        llama.reset()
        raise RuntimeError("llama.cpp could not restore a saved sequence state")
    llama.input_ids[: len(tokens)] = tokens
    llama.n_tokens = keep
