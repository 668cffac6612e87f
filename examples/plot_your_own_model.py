"""
Analysing your own model
========================

The ``captum-pags`` command and :mod:`captum_pags.analysis` measure any classifier the way
the paper does: accuracy, perceptual alignment with a diffusion model's Bayes score
difference, tangent alignment and on-/off-manifold robustness, and the regime that follows.
On the embedded ``digits16`` data (``--data digits16``, the default) the pieces ship with the
package: the diffusion model and the exact ``digits16`` subspace. This example
trains a small CNN, saves its weights as safetensors, loads them back the way the command
does, analyses the model with :func:`~captum_pags.analysis.analyze_model`, and runs a tiny
sweep with :func:`~captum_pags.analysis.run_sweep`.
"""

import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from captum_pags import fit, load_digits16
from captum_pags.analysis import (
    SweepConfig,
    analyze_model,
    load_user_data,
    load_user_model,
    run_sweep,
)
from captum_pags.models import SmallCNN

# sphinx_gallery_thumbnail_number = 2
work = Path(tempfile.mkdtemp())  # everything below is written here

# %%
# Your model
# ----------
# Any ``nn.Module`` that maps ``(N, 1, 16, 16)`` images to ``(N, C)`` logits will do;
# here a :class:`~captum_pags.models.SmallCNN` with 8 channels and ReLUs, trained for
# three epochs.
torch.manual_seed(0)
model = SmallCNN(width=8, activation="relu")
train = load_digits16("train")
history = fit(
    model,
    torch.nn.CrossEntropyLoss(),
    DataLoader(train.dataset(), batch_size=64, shuffle=True),
    epochs=3,
    optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
    quiet=True,
)
print(
    f"trained: {history.global_step} steps, last epoch's loss {history.epochs[-1]['train_loss']:.3f}"
)

# %%
# Saving it safely
# ----------------
# In Python, :func:`~captum_pags.analysis.analyze_model` takes the module itself. The
# command line reads a file, and never unpickles one: a state dict (safetensors, or a
# ``.pt`` written by ``torch.save`` and read with ``weights_only=True``) together with
# the importable class that holds it, or a TorchScript archive.
model.eval()
save_file(model.state_dict(), work / "cnn.safetensors")

# %%
# The command that analyses this file:
#
# .. code-block:: bash
#
#    captum-pags analyze --model cnn.safetensors \
#        --model-class captum_pags.models:SmallCNN \
#        --model-kwargs '{"width": 8, "activation": "relu"}' --out report_cnn
#
# For a class of your own, ``--model-class`` is its import path
# (``my_project.models:MyNet``, importable from where you run the command). ``--data``
# takes ``digits16`` (the default: its test split), a ``.pt``/``.npz`` file holding
# images ``x`` and labels ``y``, an image folder or a torchvision dataset on disk
# (:doc:`/howto/your_own_model`). The Python functions behind the options:
loaded = load_user_model(
    str(work / "cnn.safetensors"),
    "captum_pags.models:SmallCNN",
    {"width": 8, "activation": "relu"},
)
images, labels = load_user_data("digits16", max_examples=200)
with torch.no_grad():
    torch.testing.assert_close(loaded(images), model(images))

# %%
# Analysing it
# ------------
# :func:`~captum_pags.analysis.analyze_model` measures the model and writes the same
# report as the sweep for one model: ``results.json``, ``results.csv``, two figures and
# a self-contained ``report.html``, in its own folder (``analysis/`` by default, never a
# sweep's). A single model is placed in a regime only against a reference: a sweep's
# ``results.json`` (``reference=``, ``--reference``) or your unregularised model's
# accuracy (``reference_accuracy=``); without one the regime is ``undetermined``.
# ``data="digits16"`` names the embedded data; tensors you pass as ``images, labels``
# are your own data, whatever their shape.
result = analyze_model(
    loaded,
    data="digits16",
    max_examples=200,
    reference_accuracy=0.9,
    out=str(work / "report_cnn"),
    epsilons=(0.5, 1.0, 2.0),
    n_samples=4,
    quiet=True,
)
print(result.summary())
print("written:", ", ".join(sorted(path.name for path in result.files.values())))

# %%
# A tiny sweep
# ------------
# ``captum-pags sweep`` trains a grid of models with growing robustness and reports
# their regimes. ``SweepConfig.quick`` is the reduced grid of ``--quick``; here it is
# cut to three strengths of each method and ten epochs, which takes a few seconds.
# The plainly trained model (strength 0) is shared by both methods. The command line
# equivalent:
#
# .. code-block:: bash
#
#    captum-pags sweep --quick --strengths-gradient-norm 0,1,100 \
#        --strengths-noise 0,0.5,3 --epochs 10 --out sweep_report
config = SweepConfig.quick(
    out=str(work / "sweep_report"),
    strengths={"gradient_norm": (0.0, 1.0, 100.0), "noise": (0.0, 0.5, 3.0)},
    epochs=10,
    n_eval=100,
    quiet=True,
)
sweep = run_sweep(config)
print("method         strength  accuracy  alignment  on/off  regime")
for row in sweep.rows:
    print(
        f"{row['method']:14s}{row['strength']:9g}{row['accuracy']:10.2f}"
        f"{row['alignment_bayes']:11.3f}{row['relative_robustness']:8.1f}  {row['regime']}"
    )

# %%
# The report folder holds the table (``results.csv``, ``results.json``), the figures
# and ``report.html``, which embeds them (:doc:`/howto/sweep_report` explains each).
# Its alignment figure shows perceptual alignment and accuracy against the strength
# of each method (0 is drawn at the left end of the logarithmic axis): alignment
# rises from the plainly trained model to a moderate strength and falls with
# accuracy at the strongest. The full sweep (``captum-pags sweep``: twenty epochs,
# ten strengths per method) draws the whole curve.
print("\n".join(sorted(path.name for path in sweep.files.values())))
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.imshow(plt.imread(sweep.files["alignment"]))
ax.set_axis_off()
fig.tight_layout()

# %%
# ``gradient_maps.png`` shows, for each method, the log-softmax gradients of the
# unregularised model, of the most aligned one and of the most regularised one, under
# the Bayes score difference they are compared with.
fig, ax = plt.subplots(figsize=(7, 8))
ax.imshow(plt.imread(sweep.files["maps"]))
ax.set_axis_off()
fig.tight_layout()
plt.show()

# %%
# The folder of this example is temporary; yours would be kept.
shutil.rmtree(work)
