"""Settings of the main job, as a plain serialisable dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .._kernel._validation import check_choice, check_int, check_positive

__all__ = ["METHODS", "SweepConfig"]

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


@dataclass
class SweepConfig:
    """Settings of :func:`~captum_pags.analysis.run_sweep` (all plain values, JSON-serialisable).

    Parameters
    ----------
    methods : tuple of str
        Training methods, keys of :data:`METHODS`.
    strengths : dict of str to tuple of float
        Regularisation strengths per method (0 = plain cross-entropy).
    architecture : {"mlp", "cnn"}
        Classifier trained for every point of the grid.
    epochs, batch_size, lr : int, int, float
        Adam training settings.
    seeds : tuple of int
        One model per seed and grid point.
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
    """

    methods: tuple[str, ...] = ("gradient_norm", "noise")
    strengths: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_STRENGTHS))
    architecture: Literal["mlp", "cnn"] = "mlp"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0,)
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
        self.methods = tuple(self.methods)
        for m in self.methods:
            check_choice("methods", m, tuple(METHODS))
        merged = dict(DEFAULT_STRENGTHS)
        merged.update({k: tuple(float(s) for s in v) for k, v in self.strengths.items()})
        self.strengths = merged
        for m in self.methods:
            grid = self.strengths[m]
            if len(grid) < 1 or any(s < 0 for s in grid):
                raise ValueError(f"Expected `strengths` for {m!r} to be non-negative numbers but got {list(grid)}")
        check_choice("architecture", self.architecture, ("mlp", "cnn"))
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_positive("lr", self.lr)
        check_positive("sigma", self.sigma)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("Expected `seeds` to hold at least one seed but got none")
        self.epsilons = tuple(float(e) for e in self.epsilons)
        for e in self.epsilons:
            check_positive("epsilons", e)
        check_int("n_samples", self.n_samples, minimum=1)
        check_int("n_eval", self.n_eval, minimum=1)
        check_int("pgd_steps", self.pgd_steps, minimum=1)

    @classmethod
    def quick(cls, **overrides: Any) -> SweepConfig:
        """A reduced grid (three strengths per method, fewer examples) that runs in about a minute."""
        settings: dict[str, Any] = {
            "strengths": dict(QUICK_STRENGTHS),
            "n_eval": 200,
            "n_samples": 4,
            "epsilons": (0.5, 1.0),
        }
        settings.update(overrides)
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for JSON."""
        d = asdict(self)
        d["strengths"] = {k: list(v) for k, v in self.strengths.items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ValueError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Expected `data` to hold SweepConfig fields but got unknown keys {unknown}")
        d = dict(data)
        for key in ("methods", "seeds", "epsilons"):
            if key in d:
                d[key] = tuple(d[key])
        if "strengths" in d:
            d["strengths"] = {k: tuple(v) for k, v in d["strengths"].items()}
        return cls(**d)

    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
