"""A model-free scorer: SCS on hashed bag-of-words vectors.

No torch model is loaded, so it is fast and deterministic; tests and dry runs use it
(``--scorer hashing``). Same API and caching as :class:`~promptopt.scoring.SCSScorer`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptopt.scoring._scs import SCSScorer

_WORD = re.compile(r"[a-z0-9']+")


def stable_int(*parts: object) -> int:
    """A hash of ``parts`` (as text) that is the same in every process and run."""
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12], 16)


class _HashingEncoder:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.tokenizer = None

    def encode(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[i, stable_int(word) % self.dim] += 1.0
            out[i, 0] += 0.1  # no zero vectors
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class HashingScorer(SCSScorer):
    """SCS on hashed bag-of-words vectors: a fast, model-free scorer for unit tests."""

    def __init__(self, *, dim: int = 512, exponent: float = 3.0) -> None:
        super().__init__("hashing-bow", exponent=exponent)
        self.dim = dim

    def _ensure_loaded(self) -> None:
        if self._st is None:
            self._st = _HashingEncoder(self.dim)
            self._name = f"hashing-bow-{self.dim}"
