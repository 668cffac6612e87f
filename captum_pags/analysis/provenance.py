"""Where a report's numbers came from: versions, commit, device, date, wall time."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["provenance"]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the checkout the package was imported from, or ``None`` when it is installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{out}{' (with local changes)' if dirty else ''}" if out else None


def provenance(device: str, wall_seconds: float | None = None, **extra: Any) -> dict[str, Any]:
    """Package, torch and diffusers versions, git commit, device, date (UTC) and wall time.

    Examples
    --------
    >>> p = provenance("cpu", 1.5)
    >>> p["device"], p["wall_seconds"], "torch" in p
    ('cpu', 1.5, True)
    """
    import torch

    from .. import __version__

    return {
        "captum_pags": __version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "captum": _version("captum"),
        "python": platform.python_version(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "wall_seconds": wall_seconds,
        **extra,
    }
