"""
Your CIFAR classifier with your diffusion model
===============================================

The analysis of Srinivas, Bordt & Lakkaraju (NeurIPS 2023) at CIFAR size, with the pieces a
user holds: a torchvision ResNet-18 state dict with its input normalisation, images in an
``ImageFolder``, a diffusers ``UNet2DModel`` (with attention) saved as a ``DDPMPipeline``, and
a tangent space estimated from the data or from the diffusion model itself.

Here every piece is built at reduced size with random weights so that the page runs in
seconds (a random UNet has no meaningful scores: the numbers below show the mechanics, not
a finding). With your trained models the commands are the same.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import resnet18

from captum_pags.analysis import ClassifierSpec, analyze_model
from captum_pags.cli import main

work = Path(tempfile.mkdtemp())
torch.manual_seed(0)

# %%
# The pieces, as files
# --------------------
# Images in torchvision's ``ImageFolder`` layout (``ROOT/<class>/<image>.png``; the
# class index is the folder's rank in sorted order), read one batch at a time.
rng = np.random.default_rng(0)
for c in ("cat", "dog"):
    (work / "images" / c).mkdir(parents=True)
    for i in range(3):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(work / "images" / c / f"{i}.png")

# %%
# A ResNet-18 with 10 classes saved as a state dict (safetensors: nothing is unpickled).
save_file(resnet18(num_classes=10).state_dict(), str(work / "resnet18.safetensors"))

# %%
# A class-conditional UNet trained *without* a null label (like EDM's CIFAR-10 model) and an
# unconditional one, saved the way diffusers saves them. Only the pair gives the Bayes score
# difference :math:`\nabla \log p_\sigma(x \mid y) - \nabla \log p_\sigma(x)`, both at one
# noise level.


def unet(num_class_embeds=None, sample_size=32):
    return UNet2DModel(
        sample_size=sample_size,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        num_class_embeds=num_class_embeds,
    )


DDPMPipeline(unet=unet(10), scheduler=DDPMScheduler()).save_pretrained(
    work / "cond-unet"
)
DDPMPipeline(unet=unet(), scheduler=DDPMScheduler()).save_pretrained(
    work / "uncond-unet"
)

# %%
# The command
# -----------
# ``--normalize`` puts the classifier's per-channel normalisation *inside* the model, so
# gradients are taken with respect to the image in [0, 1], the units of the score.
# Before any work the pieces are checked against each other from their configs: the
# images' size against the UNet's ``sample_size``, channels, class counts, the data range,
# the device and the output folder; a mismatch is one line saying what to change.
status = main(
    [
        "analyze",
        "--model",
        str(work / "resnet18.safetensors"),
        "--model-class",
        "torchvision.models:resnet18",
        "--model-kwargs",
        '{"num_classes": 10}',
        "--normalize",
        "0.4914,0.4822,0.4465;0.247,0.243,0.261",
        "--data",
        str(work / "images"),
        "--score-model",
        str(work / "cond-unet"),
        "--unconditional-score-model",
        str(work / "uncond-unet"),
        "--tangent",
        "pca:4",
        "--epsilons",
        "0.5,1,2",
        "--n-samples",
        "2",
        "--batch-size",
        "4",
        "--quiet",
        "--out",
        str(work / "analysis"),
    ]
)
print("exit status", status)

# %%
# A piece that does not fit is refused at once, e.g. 32x32 images and a UNet of another
# ``sample_size`` (decided from ``unet/config.json``, without loading weights):
DDPMPipeline(unet=unet(10, sample_size=16), scheduler=DDPMScheduler()).save_pretrained(
    work / "small-unet"
)
refused = main(["analyze", "--model", str(work / "resnet18.safetensors"), "--model-class",
                "torchvision.models:resnet18", "--model-kwargs", '{"num_classes": 10}', "--data",
                str(work / "images"), "--score-model", str(work / "small-unet"), "--quiet"])  # fmt: skip
print("exit status", refused)

# %%
# The same in Python
# ------------------
# :func:`~captum_pags.analysis.analyze_model` takes the same components: strings as on the
# command line, or objects. Here the tangent space is the diffusion model's own
# (``denoiser:K``: the leading directions of the unconditional score's Jacobian at the
# noise level), beside a local PCA of the images (columns ``*_local``).
classifier = ClassifierSpec(
    str(work / "resnet18.safetensors"),
    "torchvision.models:resnet18",
    {"num_classes": 10},
    mean=[0.4914, 0.4822, 0.4465],
    std=[0.247, 0.243, 0.261],
)
result = analyze_model(
    classifier,
    data=str(work / "images"),
    score_model=str(work / "cond-unet"),
    unconditional_score_model=str(work / "uncond-unet"),
    tangent="denoiser:2",
    extra_tangents={"local": "local-pca:2"},
    max_examples=4,
    epsilons=(0.5, 1.0, 2.0),
    n_samples=2,
    out=str(work / "analysis-python"),
    quiet=True,
)
for key in (
    "alignment_cosine_bayes",
    "alignment_ssim_bayes",
    "tangent_alignment",
    "tangent_alignment_local",
):
    print(f"{key:26s} {result.metrics[key]: .3f}")
print("regime:", result.regime, "(no reference sweep given)")

# %%
# On- and off-manifold change against the perturbation size, for both tangent spaces.
eps = [0.5, 1.0, 2.0]
fig, ax = plt.subplots(figsize=(5, 3))
for suffix, label in (("", "denoiser:2"), ("_local", "local-pca:2")):
    ax.plot(
        eps, result.metrics[f"robustness_on_curve{suffix}"], "o-", label=f"on ({label})"
    )
    ax.plot(
        eps,
        result.metrics[f"robustness_off_curve{suffix}"],
        "s--",
        label=f"off ({label})",
    )
ax.set_xlabel("perturbation size ε")
ax.set_ylabel("softmax L1 change")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
