from __future__ import annotations

import warnings

import numpy as np
import pytest

from promptopt.errors import ConfigError
from promptopt.llm import DiskCache
from promptopt.scoring import MINILM, FallbackWarning, HashingScorer, SCSScorer


def test_scs_formula_clips_and_sharpens():
    scorer = HashingScorer(exponent=3)
    cos = np.array([-0.5, 0.0, 0.5, 1.0])
    assert scorer.sharpen(cos).tolist() == [0.0, 0.0, 0.125, 1.0]
    assert HashingScorer(exponent=1).sharpen(cos).tolist() == [0.0, 0.0, 0.5, 1.0]


def test_identical_texts_score_one_and_unrelated_lower():
    scorer = HashingScorer()
    s = scorer.score(["make it formal", "make it formal"], ["make it formal", "pirate shanty"])
    assert s[0] == pytest.approx(1.0) and s[1] < 0.2


def test_embedding_cache_in_memory_and_on_disk(tmp_path):
    scorer = HashingScorer()
    scorer.cache = DiskCache(tmp_path, "embeddings")
    scorer.embed(["a b", "c d", "a b"])
    assert scorer.embedded_count == 2
    scorer.embed(["a b"])
    assert scorer.embedded_count == 2
    fresh = HashingScorer()
    fresh.cache = DiskCache(tmp_path, "embeddings")
    fresh.embed(["a b", "c d"])
    assert fresh.embedded_count == 0


@pytest.mark.embedded
def test_packaged_minilm_really_embeds():
    scorer = SCSScorer("minilm")
    assert scorer.name == MINILM
    s = scorer.score(
        ["Rewrite this as a poem.", "Rewrite this as a poem."],
        ["Rewrite this as a poem.", "Translate the invoice totals into a spreadsheet."],
    )
    assert s[0] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= s[1] < 0.5
    assert scorer.embed(["x"]).shape == (1, 384)


@pytest.mark.embedded
def test_auto_falls_back_loudly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = SCSScorer("auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = scorer.name
    if name == MINILM:  # no local sentence-t5: the fallback must have warned
        assert any(issubclass(w.category, FallbackWarning) for w in caught)


def test_unloadable_scorer_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot load scorer"):
        _ = SCSScorer("/no/such/model/folder-xyz").name
