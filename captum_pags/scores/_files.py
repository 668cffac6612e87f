"""Reading what users hold on disk: diffusers folders and saved denoiser programs, never pickle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SCORE_CONFIG_NAME",
    "check_diffusers_layout",
    "load_diffusers_parts",
    "load_program",
    "save_diffusers_parts",
    "saved_diffusers_class",
]

#: File (next to the ``unet/`` and ``scheduler/`` folders) holding :meth:`DiffusersScore.to_config`.
SCORE_CONFIG_NAME = "score_config.json"


def check_diffusers_layout(root: Path) -> None:
    """Refuse, with what to change, directories that hold something else than a UNet and a scheduler."""
    index = root / "model_index.json"
    if index.is_file():
        try:
            components = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"Expected {str(index)!r} to be a JSON file (a diffusers pipeline index)") from None
        names = sorted(k for k in components if not k.startswith("_"))
        if "unet" not in names or "scheduler" not in names:
            raise ValueError(
                "Expected a diffusers pipeline with `unet` and `scheduler` components (e.g. a saved "
                f"DDPMPipeline or DDIMPipeline) but {str(root)!r} has {', '.join(names) or 'none'}"
            )
    if (root / "config.json").is_file() and not (root / "unet").is_dir():
        raise ValueError(
            f"Expected `path` to be a folder holding unet/ and scheduler/ but {str(root)!r} is a single model's "
            "folder; save the scheduler next to it (path/unet/, path/scheduler/) or pass the pipeline folder"
        )


def saved_diffusers_class(root: Path, folder: str, config_name: str, base: type) -> type:
    config_file = root / folder / config_name
    if not config_file.is_file():
        raise ValueError(
            f"Expected `path` to contain {folder}/{config_name} (the layout written by `save_pretrained`) "
            f"but it is missing in {str(root)!r}"
        )
    import diffusers

    name = json.loads(config_file.read_text()).get("_class_name")
    found = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(
            f"Expected {folder}/{config_name} to name a diffusers {base.__name__} class in `_class_name` "
            f"but got {name!r}"
        )
    return found


def load_diffusers_parts(
    path: str | os.PathLike, overrides: dict[str, Any], keys: tuple[str, ...]
) -> tuple[Any, Any, dict[str, Any]]:
    """The UNet, the scheduler and the wrapper settings of a local diffusers folder (``local_files_only``)."""
    import diffusers

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"Expected `path` to be a local directory written by `save_pretrained` but got {str(path)!r}")
    check_diffusers_layout(root)
    unet_cls = saved_diffusers_class(root, "unet", "config.json", diffusers.ModelMixin)
    scheduler_cls = saved_diffusers_class(root, "scheduler", "scheduler_config.json", diffusers.SchedulerMixin)
    # without accelerate, diffusers falls back to plain loading anyway (and warns on every load)
    low_mem = {} if diffusers.utils.is_accelerate_available() else {"low_cpu_mem_usage": False}
    unet = unet_cls.from_pretrained(str(root), subfolder="unet", local_files_only=True, **low_mem)
    scheduler = scheduler_cls.from_pretrained(str(root), subfolder="scheduler", local_files_only=True)
    settings_file = root / SCORE_CONFIG_NAME
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    settings.update(overrides)
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        raise ValueError(f"Expected settings among {', '.join(keys)} but got {', '.join(unknown)}")
    return unet, scheduler, settings


def save_diffusers_parts(unet: Any, scheduler: Any, settings: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``unet/``, ``scheduler/`` and ``score_config.json`` under ``path``, each file moved into place whole."""
    for name, obj in (("unet", unet), ("scheduler", scheduler)):
        if not callable(getattr(obj, "save_pretrained", None)):
            raise TypeError(f"Expected `{name}` to be a diffusers object with `save_pretrained` to save it")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-save-", dir=root))
    try:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        scheduler.save_pretrained(tmp / "scheduler")
        (tmp / SCORE_CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            dest = root / f.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dest)
            dest.chmod(0o644)  # some writers create 0600 temp files; saved models are meant to be shared
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_program(path: str | os.PathLike, device: str | torch.device | None = None) -> Any:
    """Load a module saved with :func:`torch.jit.save` (TorchScript) or :func:`torch.export.save` (``.pt2``).

    Neither format unpickles arbitrary Python objects: TorchScript archives hold TorchScript code
    and tensors, exported programs a JSON graph and tensors. The format is read from the archive's
    entries, not its suffix.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"Expected `path` to be an existing file but got {str(path)!r}")
    if not zipfile.is_zipfile(p):
        raise ValueError(
            f"Expected `path` to be a TorchScript file (torch.jit.save) or an exported program "
            f"(torch.export.save, .pt2) but {str(path)!r} is not such an archive"
        )
    with zipfile.ZipFile(p) as archive:
        names = archive.namelist()
    leaf = {n.split("/", 1)[-1] for n in names}
    try:
        if "archive_format" in leaf or any(n.startswith("models/") for n in leaf):
            module = torch.export.load(str(p)).module()
            return module if device is None else module.to(device)
        if "constants.pkl" in leaf and any(n.startswith("code/") for n in leaf):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning)  # TorchScript files stay supported
                return torch.jit.load(str(p), map_location=device).eval()
    except (RuntimeError, ValueError, OSError, KeyError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"Expected `path` {str(path)!r} to be a loadable program but loading failed: {first}"
        ) from None
    raise ValueError(
        f"Expected `path` to be a TorchScript file (torch.jit.save) or an exported program (torch.export.save, "
        f".pt2) but {str(path)!r} is another zip archive (a state dict? load the network yourself and pass it "
        "to DenoiserScore)"
    )
