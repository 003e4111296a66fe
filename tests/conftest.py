"""Shared fixtures: an isolated cache folder and working directory per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own cache folder and working directory."""
    monkeypatch.setenv("PROMPTOPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def embedded_cache(tmp_path_factory):
    """A cache folder shared by the tests that run the real embedded model."""
    return str(tmp_path_factory.mktemp("embedded-cache"))
