"""Atomic file writes, written once for checkpoints, shipped weights and reports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[str], None]) -> None:
    """Write ``path`` so that a reader sees the old file or the complete new one, never a partial one.

    ``data`` is the content, or a function that writes the file at the temporary path it is given
    (e.g. ``lambda tmp: safetensors.torch.save_file(tensors, tmp)``). The temporary file lives in
    the same folder (so the rename is atomic) under a hidden name, ``.NAME.XXXX.tmp``, that no
    pattern for the real files matches; it is flushed to disk, made world-readable like a normal
    file, then renamed. Missing parent folders are made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if isinstance(data, (bytes, bytearray)):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        else:
            os.close(fd)
            data(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
