"""Settings of the main job, as a plain serialisable dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .._kernel._validation import check_choice, check_int, check_positive

__all__ = ["DATA_RECIPES", "METHODS", "DataRecipe", "SweepConfig", "data_recipe"]

#: Training methods of the sweep, each with its strength parameter.
METHODS: dict[str, str] = {
    "gradient_norm": "lambda of the input-gradient-norm penalty",
    "noise": "sigma of Gaussian noise augmentation (randomized smoothing)",
    "pgd": "L2 radius epsilon of PGD adversarial training",
}

#: Regularisation strengths of the default sweep, per method.
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "gradient_norm": (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0),
    "noise": (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
    "pgd": (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
}
#: Strengths of the reduced ``--quick`` grid, per method.
QUICK_STRENGTHS: dict[str, tuple[float, ...]] = {
    "gradient_norm": (0.0, 1.0, 1000.0),
    "noise": (0.0, 1.0, 5.0),
    "pgd": (0.0, 1.0, 8.0),
}
#: Strengths of the default ``shapes32`` sweep (its :class:`~captum_pags.models.ConvNet` collapses
#: at smaller strengths than the ``digits16`` MLP: noise sigma 2 leaves it near chance).
SHAPES32_STRENGTHS: dict[str, tuple[float, ...]] = {
    "gradient_norm": (0.0, 0.3, 1.0, 100.0),
    "noise": (0.0, 0.05, 0.25, 2.0),
    "pgd": (0.0, 0.25, 1.0, 4.0),
}
#: Strengths of the ``shapes32`` ``--quick`` grid: none, the alignment peak, excessive.
SHAPES32_QUICK_STRENGTHS: dict[str, tuple[float, ...]] = {
    "gradient_norm": (0.0, 0.3, 100.0),
    "noise": (0.0, 0.25, 2.0),
    "pgd": (0.0, 1.0, 4.0),
}


@dataclass(frozen=True)
class DataRecipe:
    """How the sweep trains on one dataset where a setting is not given (see :data:`DATA_RECIPES`)."""

    architecture: str
    epochs: int
    lr: float
    lr_schedule: str
    seeds: tuple[int, ...]
    strengths: dict[str, tuple[float, ...]]
    quick_strengths: dict[str, tuple[float, ...]]


#: The training recipe of each embedded dataset; data of your own get ``digits16``'s.
DATA_RECIPES: dict[str, DataRecipe] = {
    "digits16": DataRecipe("mlp", 20, 1e-3, "constant", (0, 1, 2), DEFAULT_STRENGTHS, QUICK_STRENGTHS),
    "shapes32": DataRecipe("convnet", 10, 2e-3, "cosine", (0,), SHAPES32_STRENGTHS, SHAPES32_QUICK_STRENGTHS),
}


def data_recipe(data: str) -> DataRecipe:
    """The recipe of ``--data`` (``digits16``'s for data of your own).

    Examples
    --------
    >>> data_recipe("shapes32").architecture, data_recipe("cifar10:./data").architecture
    ('convnet', 'mlp')
    """
    return DATA_RECIPES.get(data, DATA_RECIPES["digits16"])


def _grid(method: str, values: Any) -> tuple[float, ...]:
    """A method's strength grid: non-empty, finite, non-negative numbers, each once."""
    if isinstance(values, (int, float, str)) or not isinstance(values, (tuple, list)):
        raise TypeError(f"Expected `strengths[{method!r}]` to be a sequence of numbers but got {values!r}")
    grid = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"Expected `strengths[{method!r}]` to hold finite numbers >= 0 but got {list(values)}")
        grid.append(float(v))
    if not grid:
        raise ValueError(f"Expected `strengths[{method!r}]` to hold at least one strength but got none")
    if len(set(grid)) != len(grid):
        raise ValueError(f"Expected `strengths[{method!r}]` to hold each strength once but got {grid}")
    return tuple(grid)


def _check_components(config: SweepConfig) -> None:
    """Refuse a ``data`` / ``score_model`` / ``tangent`` / ``architecture`` the sweep cannot use (no loading)."""
    from .components.embedded import EMBEDDED_DATASETS
    from .components.parse import parse_data, parse_score_model, parse_tangent
    from .errors import AnalysisInputError

    for name in ("data", "score_model", "tangent", "architecture"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value:
            raise TypeError(f"Expected `{name}` to be a non-empty str but got {value!r}")
    embedded = config.data in EMBEDDED_DATASETS or config.data in KNOWN_EMBEDDED
    if config.train_data is not None and (not isinstance(config.train_data, str) or not config.train_data):
        raise TypeError(f"Expected `train_data` to be a non-empty str or None but got {config.train_data!r}")
    if embedded and config.train_data is not None:
        raise AnalysisInputError(
            f"--data {config.data} trains on its own training split: drop --train-data {config.train_data}"
        )
    if not embedded:
        from .components.images import TorchvisionData

        source = parse_data(config.data)  # refuses what is no data source at all
        if config.train_data is None and not isinstance(source, TorchvisionData):
            raise AnalysisInputError(
                f"the sweep trains its models on a training split, and --data {config.data} has none: pass "
                "--train-data with your training images (a .npz/.pt file or an image folder), use a torchvision "
                f"dataset (cifar10:ROOT) or an embedded dataset "
                f"({', '.join(sorted(set(EMBEDDED_DATASETS) | set(KNOWN_EMBEDDED)))})"
            )
        if config.train_data is not None:
            parse_data(config.train_data)
        if config.tangent == "exact":
            raise AnalysisInputError(
                f"--tangent exact needs data with a known manifold, and --data {config.data} has none: use "
                "pca:K, local-pca:K, decoder:PATH or denoiser:K"
            )
    parse_tangent(config.tangent)
    if config.score_model != "auto":
        parse_score_model(config.score_model)
    arch = config.architecture
    if arch not in ("mlp", "cnn", "convnet") and (":" not in arch or not all(arch.partition(":")[::2])):
        raise AnalysisInputError(
            "Expected `architecture` (--architecture) to be mlp, cnn, convnet or a class module:Name "
            "(e.g. torchvision.models:resnet18) "
            f"but got {arch!r}"
        )


#: Embedded datasets of the package the sweep knows without loading them.
KNOWN_EMBEDDED = ("digits16", "shapes32")


@dataclass
class SweepConfig:
    """Settings of :func:`~captum_pags.analysis.run_sweep` (all plain values, JSON-serialisable).

    Parameters
    ----------
    methods : tuple of str
        Training methods, keys of :data:`METHODS`.
    strengths : dict of str to tuple of float, optional
        Regularisation strengths per method (0 = plain cross-entropy); methods left out get the
        data's grid (:data:`DATA_RECIPES`).
    strength_units : {"ours", "paper"}
        ``"paper"``: the strengths are the paper's values (its released training script's
        ``--reg-constant`` / ``--epsilon`` / ``--noise-std``) at this sweep's ``batch_size``,
        converted with :func:`~captum_pags.training.from_paper_strength` for training, so the
        sweep can run on the paper's grid (:data:`~captum_pags.training.paper_units.PAPER_GRIDS`); the report
        shows them in the paper's units.
    data : str
        ``--data`` of the sweep (read by :func:`~captum_pags.analysis.components.parse_data`): an
        embedded dataset of :data:`~captum_pags.analysis.EMBEDDED_DATASETS` (``"digits16"``,
        ``"shapes32"``), whose training split trains the models and whose test split is measured; or
        a data source of your own (``"cifar10:ROOT"``, a ``.npz``/``.pt`` file, an image folder)
        whose images are measured. A torchvision dataset trains on its own training split; any
        other source needs ``train_data``. Your own data has no known manifold: give ``tangent``.
    train_data : str, optional
        ``--train-data``: the training images of a data source of your own (same forms as
        ``data``; ``"cifar10:ROOT"`` means its training split). Held in memory as float32 while
        the models train.
    score_model : str
        ``--score-model``: ``"auto"`` (the model shipped for the data), ``"none"``, or a diffusers
        folder / denoiser file (:func:`~captum_pags.analysis.components.parse_score_model`).
    tangent : str
        ``--tangent`` (:func:`~captum_pags.analysis.components.parse_tangent`): the tangent space of
        tangent alignment and on-/off-manifold robustness, ``"exact"`` by default; the shipped
        estimators of the data (digits16: the decoder; shapes32: decoder, local PCA, denoiser)
        are measured next to it.
    architecture : str, optional
        Classifier trained for every point of the grid: ``"mlp"``, ``"cnn"``, ``"convnet"``
        (:class:`~captum_pags.models.ConvNet`), or a class ``"module:Name"`` such as
        ``"torchvision.models:resnet18"``. ``None``: the data's (``mlp`` for ``digits16`` and data
        of your own, ``convnet`` for ``shapes32``).
    architecture_kwargs : dict
        Keyword arguments of the architecture's class (:class:`~captum_pags.models.MLP`,
        :class:`~captum_pags.models.SmallCNN` or the named class), e.g. ``{"hidden": [64, 64]}``
        for the MLP or ``{"num_classes": 10}`` for a torchvision model.
    epochs, batch_size, lr : int, int, float
        Adam training settings; ``None`` epochs or lr: the data's (:data:`DATA_RECIPES`: 20 and
        1e-3 for ``digits16``, 10 and 2e-3 for ``shapes32``).
    lr_schedule : {"constant", "cosine"}, optional
        Learning rate over the epochs: constant, or cosine annealing to 0
        (:class:`torch.optim.lr_scheduler.CosineAnnealingLR`, stepped once per epoch). ``None``:
        the data's (constant for ``digits16``, cosine for ``shapes32``).
    seeds : tuple of int, optional
        One model per seed and grid point; the report shows mean +- sd over them. ``None``: the
        data's (three for ``digits16``, one for ``shapes32`` to fit in 10 minutes on 2 cores).
    sigma : float
        Noise level of the score model (``[0, 1]`` pixel units) for perceptual alignment.
    epsilons : tuple of float
        L2 sizes of the random on-/off-manifold perturbations.
    n_samples : int
        Random directions per example and size.
    n_eval : int
        Test examples measured.
    pgd_steps : int
        PGD steps for ``"pgd"`` training.
    out : str
        Report folder; trained models are cached in ``out/models``.
    seed : int
        Seed of evaluation randomness.
    device : str
        Torch device.
    quiet : bool
        No progress bars.
    retrain : bool
        Ignore cached models.

    Examples
    --------
    >>> cfg = SweepConfig.quick(out="tmp")
    >>> cfg.strengths["gradient_norm"], cfg.methods
    ((0.0, 1.0, 1000.0), ('gradient_norm', 'noise'))
    >>> SweepConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> shapes = SweepConfig(data="shapes32")
    >>> shapes.architecture, shapes.epochs, shapes.lr_schedule, shapes.seeds
    ('convnet', 10, 'cosine', (0,))
    """

    methods: tuple[str, ...] = ("gradient_norm", "noise")
    strengths: dict[str, tuple[float, ...]] | None = None
    strength_units: Literal["ours", "paper"] = "ours"
    data: str = "digits16"
    train_data: str | None = None
    score_model: str = "auto"
    tangent: str = "exact"
    architecture: str | None = None
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    lr_schedule: Literal["constant", "cosine"] | None = None
    seeds: tuple[int, ...] | None = None
    sigma: float = 0.3
    epsilons: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    n_samples: int = 10
    n_eval: int = 360
    pgd_steps: int = 7
    out: str = "report"
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False
    retrain: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.methods, str) or not isinstance(self.methods, (tuple, list)):
            raise TypeError(f"Expected `methods` to be a sequence of method names but got {self.methods!r}")
        self.methods = tuple(self.methods)
        if not self.methods:
            raise ValueError(f"Expected `methods` to hold at least one of {list(METHODS)} but got none")
        for m in self.methods:
            check_choice("methods", m, tuple(METHODS))
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"Expected `methods` to name each method once but got {list(self.methods)}")
        if not isinstance(self.data, str) or not self.data:
            raise TypeError(f"Expected `data` to be a non-empty str but got {self.data!r}")
        recipe = data_recipe(self.data)
        if self.strengths is None:
            self.strengths = {}
        if not isinstance(self.strengths, dict):
            raise TypeError(f"Expected `strengths` to be a dict of method to strengths but got {self.strengths!r}")
        unknown = sorted(set(self.strengths) - set(METHODS))
        if unknown:
            raise ValueError(f"Expected the keys of `strengths` to be methods {list(METHODS)} but got {unknown}")
        for name in ("architecture", "epochs", "lr", "lr_schedule", "seeds"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))
        merged = dict(recipe.strengths)
        merged.update({k: _grid(k, v) for k, v in self.strengths.items()})
        self.strengths = merged
        check_choice("strength_units", self.strength_units, ("ours", "paper"))
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        _check_components(self)
        if not isinstance(self.architecture_kwargs, dict) or not all(
            isinstance(k, str) for k in self.architecture_kwargs
        ):
            raise TypeError(
                f"Expected `architecture_kwargs` to be a dict with string keys but got {self.architecture_kwargs!r}"
            )
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_positive("lr", self.lr)
        check_positive("sigma", self.sigma)
        if isinstance(self.seeds, (int, str)) or not isinstance(self.seeds, (tuple, list)):
            raise TypeError(f"Expected `seeds` to be a sequence of ints but got {self.seeds!r}")
        self.seeds = tuple(check_int("seeds", s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("Expected `seeds` to hold at least one seed but got none")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Expected `seeds` to hold distinct seeds but got {list(self.seeds)}")
        if isinstance(self.epsilons, (int, float, str)) or not isinstance(self.epsilons, (tuple, list)):
            raise TypeError(f"Expected `epsilons` to be a sequence of numbers but got {self.epsilons!r}")
        self.epsilons = tuple(check_positive("epsilons", e) for e in self.epsilons)
        if not self.epsilons:
            raise ValueError("Expected `epsilons` to hold at least one size but got none")
        check_int("n_samples", self.n_samples, minimum=1)
        check_int("n_eval", self.n_eval, minimum=1)
        check_int("pgd_steps", self.pgd_steps, minimum=1)
        check_int("seed", self.seed)
        if not isinstance(self.out, str) or not self.out:
            raise TypeError(f"Expected `out` to be a folder name (str) but got {self.out!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"Expected `device` to be a str such as 'cpu' but got {self.device!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> SweepConfig:
        """A reduced grid (three strengths per method, one seed, fewer examples) for a first look or CI.

        The grid is the data's (:data:`DATA_RECIPES`): for ``shapes32`` no regularisation, the
        alignment peak and an excessive strength, so the inverted U shows in three points.
        """
        recipe = data_recipe(overrides.get("data", "digits16"))
        settings: dict[str, Any] = {
            "strengths": dict(recipe.quick_strengths),
            "n_eval": 200,
            "n_samples": 4,
            "epsilons": (0.5, 1.0),
            "seeds": (0,),
        }
        if isinstance(overrides.get("strengths"), dict):  # methods left out keep the quick grid
            overrides = {**overrides, "strengths": {**settings["strengths"], **overrides["strengths"]}}
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for JSON."""
        d = asdict(self)
        d["strengths"] = {k: list(v) for k, v in self.strengths.items()}
        for key in ("methods", "seeds", "epsilons"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ValueError`."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected `data` to be a dict of SweepConfig fields but got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Expected `data` to hold SweepConfig fields but got unknown keys {unknown}")
        d = dict(data)
        for key in ("methods", "seeds", "epsilons"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        if isinstance(d.get("strengths"), dict):
            d["strengths"] = {k: tuple(v) if isinstance(v, list) else v for k, v in d["strengths"].items()}
        return cls(**d)

    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with some fields changed (validated again).

        A change of ``data`` also moves the settings that are the old data's defaults
        (:data:`DATA_RECIPES`) to the new data's; settings given explicitly stay.

        Examples
        --------
        >>> SweepConfig().replace(data="shapes32").architecture
        'convnet'
        >>> SweepConfig(epochs=3).replace(data="shapes32").epochs
        3
        """
        if "data" in changes and changes["data"] != self.data:
            old = data_recipe(self.data)
            for name in ("architecture", "epochs", "lr", "lr_schedule", "seeds"):
                if name not in changes and getattr(self, name) == getattr(old, name):
                    changes[name] = None
            if "strengths" not in changes:
                changes["strengths"] = {m: v for m, v in self.strengths.items() if v != old.strengths.get(m)}
        return replace(self, **changes)
