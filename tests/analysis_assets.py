"""Files a user of the analysis has, built locally at real size (3x32x32) with small widths.

Nothing is downloaded: the networks are randomly initialised with real architectures
(a ``UNet2DModel`` with attention saved like a diffusers pipeline, a torchvision ResNet-18 state
dict, an ``AutoencoderKL``), the images are PNG files and a CIFAR-10 folder in the real
pickle-batch layout.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def tiny_unet(num_class_embeds: int | None = None, sample_size: int = 32):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        num_class_embeds=num_class_embeds,
    )


def write_png_folder(root: Path, classes: int = 2, per_class: int = 2, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def write_fake_cifar10(root: Path, n_train: int = 20, n_test: int = 6, seed: int = 0) -> Path:
    """``cifar-10-batches-py`` with five training batches, a test batch and ``batches.meta`` (pickles)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        return {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, n)],
        }

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(n_train // 5)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def skip_cifar_checksums(monkeypatch) -> None:
    """The fake files cannot match the real archive's MD5 sums; torchvision's reader is otherwise used as is."""
    import os

    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))


@dataclass
class Assets:
    root: Path
    images: Path
    resnet: Path
    conditional: Path
    unconditional: Path
    null_label: Path
    vae: Path
    cifar: Path
    small_unet: Path


def build_assets(root: Path) -> Assets:
    from diffusers import AutoencoderKL, DDPMPipeline, DDPMScheduler
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    from captum_pags.scores import DiffusersScore

    gen_state = torch.get_rng_state()
    torch.manual_seed(0)
    try:
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        # class-conditional without a null label, saved as a diffusers pipeline
        DDPMPipeline(unet=tiny_unet(10), scheduler=scheduler).save_pretrained(root / "cond")
        # unconditional, saved as unet/ + scheduler/
        tiny_unet(None).save_pretrained(root / "uncond" / "unet")
        scheduler.save_pretrained(root / "uncond" / "scheduler")
        # class-conditional with a null label (index 10)
        DiffusersScore(tiny_unet(11), scheduler, null_class=10).save_pretrained(root / "null")
        # a 16x16 model, for the refusal of 32x32 data
        tiny_unet(10, sample_size=16).save_pretrained(root / "small" / "unet")
        scheduler.save_pretrained(root / "small" / "scheduler")
        save_file(resnet18(num_classes=10).state_dict(), str(root / "resnet18.safetensors"))
        AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=2,
            norm_num_groups=4,
            layers_per_block=1,
            sample_size=32,
        ).save_pretrained(root / "vae")
    finally:
        torch.set_rng_state(gen_state)
    return Assets(
        root=root,
        images=write_png_folder(root / "images"),
        resnet=root / "resnet18.safetensors",
        conditional=root / "cond",
        unconditional=root / "uncond",
        null_label=root / "null",
        vae=root / "vae",
        cifar=write_fake_cifar10(root / "cifar"),
        small_unet=root / "small",
    )
