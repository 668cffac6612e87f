"""Measurement settings of the analysis, as a plain serialisable dataclass (no torch needed to check them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import AnalysisInputError

__all__ = ["AnalysisSettings"]


def _number(name: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnalysisInputError(f"Expected `{name}` to be a number but got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise AnalysisInputError(f"Expected `{name}` to be a finite number > 0 but got {value}")
    return value


def _count(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnalysisInputError(f"Expected `{name}` to be an integer but got {value!r}")
    if value < 1:
        raise AnalysisInputError(f"Expected `{name}` to be >= 1 but got {value}")
    return value


@dataclass(frozen=True)
class AnalysisSettings:
    """How the analysis measures: noise level, perturbation sizes, batches, device.

    Attributes
    ----------
    sigma : float
        Noise level of the scores (data units).
    epsilons : tuple of float
        Perturbation sizes of the robustness measurement (data units).
    n_samples : int
        Random directions per example and size.
    batch_size : int
        Examples per batch: the data are read, scored and measured one batch at a time.
    max_examples : int, optional
        Analyse at most this many examples (None: all).
    seed : int
        Seed of the random directions (batch ``b`` uses ``seed + b``).
    device : str
        Torch device.

    Examples
    --------
    >>> s = AnalysisSettings(epsilons=(0.5, 1.0), batch_size=32)
    >>> AnalysisSettings.from_config(s.to_config()) == s
    True
    >>> AnalysisSettings(batch_size=0)
    Traceback (most recent call last):
    ...
    captum_pags.analysis.errors.AnalysisInputError: Expected `batch_size` to be >= 1 but got 0
    """

    sigma: float = 0.3
    epsilons: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    n_samples: int = 10
    batch_size: int = 64
    max_examples: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _number("sigma", self.sigma))
        eps = self.epsilons
        if isinstance(eps, (int, float)) and not isinstance(eps, bool):
            eps = (eps,)
        try:
            eps = tuple(eps)
        except TypeError:
            raise AnalysisInputError(f"Expected `epsilons` to be a sequence of numbers but got {eps!r}") from None
        if not eps:
            raise AnalysisInputError("Expected `epsilons` to hold at least one perturbation size but got none")
        object.__setattr__(self, "epsilons", tuple(_number("epsilons", e) for e in eps))
        _count("n_samples", self.n_samples)
        _count("batch_size", self.batch_size)
        _count("max_examples", self.max_examples, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise AnalysisInputError(f"Expected `seed` to be an integer >= 0 but got {self.seed!r}")
        if not isinstance(self.device, str) or not self.device:
            raise AnalysisInputError(f"Expected `device` to be a device name such as 'cpu' but got {self.device!r}")

    def to_config(self) -> dict[str, Any]:
        """Plain values (lists for tuples); :meth:`from_config` rebuilds the settings."""
        out = asdict(self)
        out["epsilons"] = list(self.epsilons)
        return out

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AnalysisSettings:
        """Rebuild settings from :meth:`to_config`'s dict; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise AnalysisInputError(f"Expected settings among {sorted(known)} but got unknown keys {unknown}")
        values = dict(config)
        if "epsilons" in values and isinstance(values["epsilons"], list):
            values["epsilons"] = tuple(values["epsilons"])
        return cls(**values)

    def check_device(self) -> None:
        """Refuse a device torch does not know or that is not available here."""
        import torch

        try:
            dev = torch.device(self.device)
        except (RuntimeError, ValueError):
            raise AnalysisInputError(
                f"Expected `device` to be a torch device such as cpu, cuda or cuda:0 but got {self.device!r}"
            ) from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise AnalysisInputError(f"device {self.device!r} was asked for but CUDA is not available here")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                count = torch.cuda.device_count()
                raise AnalysisInputError(
                    f"device {self.device!r} does not exist: this machine has {count} CUDA device(s)"
                )
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            raise AnalysisInputError(f"device {self.device!r} was asked for but MPS is not available here")
        elif dev.type not in ("cpu", "cuda", "mps"):
            raise AnalysisInputError(f"Expected `device` to be cpu, cuda or mps but got {self.device!r}")
