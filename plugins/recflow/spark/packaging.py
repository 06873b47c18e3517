"""The ``recflow`` package as a zip for ``spark-submit --py-files``: how executors on a cluster get it.

Why a zip and not the venv: on ``local[*]`` the executors are threads of the driver's JVM and import
from the driver's venv, but a worker on another machine sees only what is shipped to it (or baked into
its image). The zip is content-addressed (``recflow-<sha256 of the sources>.zip``), so it is built once
per code version, a re-run reuses it, and two concurrent tasks never see a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

from recflow.config.settings import state_dir

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _sources(package_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def sources_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the package's relative paths and bytes (what decides whether to rebuild)."""
    digest = hashlib.sha256()
    for path in _sources(package_dir):
        digest.update(str(path.relative_to(package_dir.parent)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def job_archive(package_dir: Path = PACKAGE_DIR, out_dir: Path | None = None) -> Path:
    """Build (or reuse) the zip with ``recflow/`` at its root; return its path."""
    out_dir = out_dir or state_dir() / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"recflow-{sources_digest(package_dir)[:16]}.zip"
    if target.is_file():
        return target
    fd, tmp = tempfile.mkstemp(prefix=".recflow-", suffix=".zip", dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in _sources(package_dir):
                # fixed timestamps: the same sources give the same bytes
                info = zipfile.ZipInfo(str(path.relative_to(package_dir.parent)), date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
