"""Shipped weights: a safetensors file and a JSON config per model, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._kernel._io import atomic_write

#: Folder holding one sub-folder of shipped weights per model.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_weights(folder: str | os.PathLike, state_dict: dict[str, Tensor], config: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder``, each atomically."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))

    def write_json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
            fh.write("\n")

    atomic_write(folder / CONFIG_FILE, write_json)


def load_weights(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """Read ``(state_dict, config)`` from a folder written by :func:`save_weights`."""
    folder = Path(folder)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"Expected the weights folder {folder.name!r} to contain {name!r}; run the model's training script "
                "to create it"
            )
    with open(folder / CONFIG_FILE, encoding="utf-8") as fh:
        config = json.load(fh)
    return load_file(folder / WEIGHTS_FILE, device=str(device)), config
