"""The sweep's grid as independent tasks: one per trained model, each named by every setting it depends on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import MLP, ConvNet, SmallCNN
from ..training import AdversarialLoss, GradientNormLoss, RandomizedSmoothingLoss, StandardLoss, from_paper_strength
from .config import SweepConfig

__all__ = ["SweepTask", "data_info", "estimator_names", "parse_shard", "shard_tasks", "sweep_tasks"]

#: Bumped when training changes in a way the settings below do not show (invalidates cached models).
_TRAINING_VERSION = 1
#: Shape and class count of the embedded datasets known without loading them.
_KNOWN_DATA: dict[str, tuple[tuple[int, ...], int]] = {"digits16": ((1, 16, 16), 10), "shapes32": ((3, 32, 32), 5)}


def data_info(config: SweepConfig) -> tuple[tuple[int, ...], int]:
    """Per-example shape and number of classes of ``config.data``.

    Examples
    --------
    >>> data_info(SweepConfig(data="shapes32"))
    ((3, 32, 32), 5)
    """
    if config.data in _KNOWN_DATA:
        return _KNOWN_DATA[config.data]
    from .components.embedded import EMBEDDED_DATASETS, EmbeddedData

    if config.data in EMBEDDED_DATASETS:
        data = EmbeddedData(config.data)
        return tuple(data.shape), int(data.num_classes or 0)
    from .tasks import train_source  # a data source of the user's: its training images say the classes

    source = train_source(config)
    classes = source.num_classes
    if classes is None:  # a file of images and labels: the classes its labels name
        classes = max(int(y.max()) for _, y in source.batches(1024)) + 1
    return tuple(source.shape), int(classes)


@dataclass(frozen=True, order=True)
class SweepTask:
    """One model of the sweep: plain cross-entropy (``method="plain"``, strength 0) or a method at a strength.

    A strength-0 model is the same for every method, so it is one task whose result serves each
    method's row at strength 0.

    Examples
    --------
    >>> SweepTask("noise", 0.5, 1).name("mlp")
    'mlp_noise_0.5_s1'
    >>> SweepTask.for_grid_point("pgd", 0.0, 2)
    SweepTask(method='plain', strength=0.0, seed=2)
    """

    method: str
    strength: float
    seed: int

    @classmethod
    def for_grid_point(cls, method: str, strength: float, seed: int) -> SweepTask:
        """The task that trains the model of ``(method, strength, seed)``."""
        return cls("plain", 0.0, seed) if strength == 0 else cls(method, float(strength), seed)

    def name(self, architecture: str, units: str = "ours") -> str:
        """Readable part of the model's folder name."""
        kind = "plain" if self.method == "plain" else f"{self.method}_{self.strength:g}"
        if units == "paper" and self.method != "plain":
            kind += "paper"
        return f"{architecture}_{kind}_s{self.seed}"

    def serves(self, config: SweepConfig) -> list[tuple[str, float]]:
        """The ``(method, strength)`` grid points this model stands for."""
        if self.method == "plain":
            return [(m, 0.0) for m in config.methods if 0.0 in config.strengths[m]]
        return [(self.method, self.strength)]


def sweep_tasks(config: SweepConfig) -> list[SweepTask]:
    """Every model of ``config``'s grid, once, in a fixed order (plain models first, then by method and strength).

    Examples
    --------
    >>> cfg = SweepConfig.quick(methods=("noise", "pgd"), strengths={"noise": (0.0, 1.0), "pgd": (0.0, 2.0)})
    >>> [(t.method, t.strength) for t in sweep_tasks(cfg)]
    [('plain', 0.0), ('noise', 1.0), ('pgd', 2.0)]
    """
    tasks = {
        SweepTask.for_grid_point(m, s, seed)
        for m in config.methods
        for s in config.strengths[m]
        for seed in config.seeds
    }
    order = {"plain": -1, **{m: i for i, m in enumerate(config.methods)}}
    return sorted(tasks, key=lambda t: (order[t.method], t.strength, t.seed))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1-based ``I``) as ``(I, N)``.

    Examples
    --------
    >>> parse_shard("2/3")
    (2, 3)
    """
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"Expected `shard` to be I/N with integers 1 <= I <= N but got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"Expected `shard` to be I/N with integers 1 <= I <= N but got {text!r}")
    return i, n


def shard_tasks(tasks: list[SweepTask], shard: tuple[int, int]) -> list[SweepTask]:
    """Shard ``I`` of ``N``: every ``N``-th task starting at the ``I``-th; the shards cover the grid exactly once.

    Examples
    --------
    >>> tasks = [SweepTask("noise", float(s), 0) for s in range(1, 6)]
    >>> [t.strength for t in shard_tasks(tasks, (2, 2))]
    [2.0, 4.0]
    """
    i, n = shard
    return tasks[i - 1 :: n]


def build_model(config: SweepConfig) -> nn.Module:
    """A fresh classifier of ``config.architecture`` with ``config.architecture_kwargs``."""
    from .errors import AnalysisInputError

    kwargs = dict(config.architecture_kwargs)
    shape, classes = data_info(config)
    if config.architecture == "cnn":
        cls: Any = SmallCNN
        kwargs = {"in_channels": shape[0], "num_classes": classes, **kwargs}
        if shape != (1, 16, 16):  # the digits16 default stays as it was
            kwargs = {"input_size": shape[-1], **kwargs}
    elif config.architecture == "convnet":
        cls = ConvNet
        kwargs = {"in_channels": shape[0], "num_classes": classes, **kwargs}
    elif config.architecture == "mlp":
        cls = MLP
        kwargs = {"input_shape": shape, "hidden": (256, 128, 128), "num_classes": classes, **kwargs}
    else:
        from .components.classifier import _import

        cls = _import(config.architecture)
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise AnalysisInputError(
            f"cannot build --architecture {config.architecture} with --architecture-kwargs {kwargs}: {err}"
        ) from None
    if not isinstance(model, nn.Module):
        raise AnalysisInputError(f"Expected --architecture {config.architecture} to build a torch.nn.Module")
    return model


def training_strength(task: SweepTask, config: SweepConfig) -> float:
    """The strength the loss is built with: ``task.strength``, converted from the paper's units if asked."""
    if task.method == "plain" or config.strength_units == "ours":
        return task.strength
    return from_paper_strength(task.method, task.strength, batch_size=config.batch_size)  # type: ignore[arg-type]


def make_loss(task: SweepTask, config: SweepConfig) -> nn.Module:
    """The training loss of ``task``."""
    if task.method == "plain":
        return StandardLoss()
    strength = training_strength(task, config)
    if task.method == "gradient_norm":
        return GradientNormLoss(strength)
    if task.method == "noise":
        return RandomizedSmoothingLoss(strength)
    return AdversarialLoss(strength, steps=config.pgd_steps, norm="l2")


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def _loss_settings(loss: nn.Module) -> dict[str, Any]:
    """Every setting of a loss: its public attributes, attack settings and its ``repr``."""
    settings = {k: _plain(v) for k, v in vars(loss).items() if not k.startswith("_") and k != "training"}
    if hasattr(loss, "_attack_kwargs"):  # AdversarialLoss keeps its PGD settings here
        settings["attack"] = _plain(loss._attack_kwargs)
    return {"class": type(loss).__name__, "repr": repr(loss), **settings}


def training_settings(task: SweepTask, config: SweepConfig) -> dict[str, Any]:
    """Everything the trained weights depend on: the cache key is a hash of this.

    Examples
    --------
    >>> s = training_settings(SweepTask("pgd", 1.0, 0), SweepConfig.quick())
    >>> s["loss"]["attack"]["steps"], s["epochs"]
    (7, 20)
    """
    with torch.random.fork_rng(devices=[]):  # built only for its repr: leave the caller's RNG alone
        model = build_model(config)
    arch = {"class": type(model).__name__, "kwargs": _plain(config.architecture_kwargs), "repr": repr(model)}
    return {
        "version": _TRAINING_VERSION,
        "data": config.train_data or f"{config.data}:train",
        "architecture": config.architecture,
        "model": arch,
        "loss": _loss_settings(make_loss(task, config)),
        "seed": task.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "optimizer": "Adam",
        # only when not constant, so models trained before the option existed keep their cache keys
        **({"lr_schedule": config.lr_schedule} if config.lr_schedule != "constant" else {}),
    }


def settings_hash(settings: dict[str, Any]) -> str:
    """Short stable hash of plain settings."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _readable(spec: str) -> str:
    """A data spec as a folder-name part (``cifar10:/data`` -> ``cifar10``)."""
    head = spec.partition(":")[0] if ":" in spec and not spec.startswith((".", "/")) else spec
    name = "".join(c if c.isalnum() else "_" for c in head.rpartition("/")[2])
    return name.strip("_") or "data"


def model_key(task: SweepTask, config: SweepConfig) -> str:
    """The model's cache folder name: readable part plus a hash of every training setting.

    Examples
    --------
    >>> a = model_key(SweepTask("pgd", 1.0, 0), SweepConfig.quick())
    >>> a == model_key(SweepTask("pgd", 1.0, 0), SweepConfig.quick(pgd_steps=3))
    False
    """
    arch = config.architecture.rpartition(":")[2].rpartition(".")[2]
    prefix = "" if config.data == "digits16" else f"{_readable(config.data)}_"
    return f"{prefix}{task.name(arch, config.strength_units)}_{settings_hash(training_settings(task, config))}"


def evaluation_settings(config: SweepConfig) -> dict[str, Any]:
    """Everything a model's measurements depend on besides its weights."""
    return {
        "data": f"{config.data}:test",
        "n_eval": config.n_eval,
        "sigma": config.sigma,
        "epsilons": list(config.epsilons),
        "n_samples": config.n_samples,
        "seed": config.seed,
        "device": config.device,
        "tangent_spaces": [config.tangent, *estimator_names(config)],
        "score_model": "digits16_score"
        if (config.data, config.score_model) == ("digits16", "auto")
        else config.score_model,
    }


def estimator_names(config: SweepConfig) -> list[str]:
    """The shipped tangent estimators measured next to ``config.tangent`` (digits16: decoder; shapes32: three)."""
    if config.data == "shapes32":
        return ["decoder", "local-pca", "denoiser"]
    if config.data == "digits16":
        return ["decoder"]
    return []
