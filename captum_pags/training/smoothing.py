"""Randomized smoothing: a certifiably L2-robust classifier from any base classifier."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._kernel._model_state import preserved_state
from .._kernel._tensors import chunks
from .._kernel._validation import check_batch, check_int, check_positive, check_tensor
from ._checks import check_float_inputs

__all__ = ["ABSTAIN", "Certificate", "SmoothedClassifier"]

#: Label returned for examples on which the smoothed classifier abstains.
ABSTAIN = -1


@dataclass(frozen=True)
class Certificate:
    """Result of :meth:`SmoothedClassifier.certify`.

    Attributes
    ----------
    prediction : Tensor
        ``(N,)`` int64 predicted class, or :data:`ABSTAIN` (``-1``).
    radius : Tensor
        ``(N,)`` certified L2 radius (``0`` where the classifier abstains), float64.
    p_lower : Tensor
        ``(N,)`` one-sided Clopper-Pearson lower bound on the top class probability, float64.
    counts : Tensor
        ``(N, C)`` int64 class counts of the ``n`` estimation samples.

    Examples
    --------
    >>> smoothed = SmoothedClassifier(lambda x: torch.tensor([[5.0, 0.0]]).expand(len(x), 2), sigma=0.5, num_classes=2)
    >>> cert = smoothed.certify(torch.zeros(1, 3), n0=10, n=100, alpha=0.001)
    >>> int(cert.prediction), bool(cert.radius > 0)
    (0, True)
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor
    counts: Tensor


def _check_alpha(alpha: Any) -> float:
    value = check_positive("alpha", alpha)
    if value >= 1:
        raise ValueError(f"Expected `alpha` to be in (0, 1) but got {value}")
    return value


class SmoothedClassifier:
    r"""The Gaussian-smoothed classifier of Cohen, Rosenfeld & Kolter (ICML 2019).

    .. math::

        g(x) = \arg\max_c\; \mathbb{P}_{\delta \sim \mathcal{N}(0, \sigma^2 I)}
        \big(f(x + \delta) = c\big).

    If the top class has probability :math:`p_A \ge \underline{p_A} > 1/2`, then :math:`g` is
    constant on the L2 ball of radius :math:`R = \sigma\, \Phi^{-1}(\underline{p_A})` around
    :math:`x`. :meth:`certify` estimates :math:`\underline{p_A}` with a one-sided Clopper-Pearson
    bound, :meth:`predict` returns :math:`g(x)` or abstains, both with error probability at most
    ``alpha`` per example. Noisy copies of all examples are classified together in batches.

    Parameters
    ----------
    model : Callable
        The base classifier: logits ``(M, num_classes)`` for ``(M, *shape)`` inputs. A module runs
        in eval mode under ``no_grad`` and is left as it was.
    sigma : float
        Noise standard deviation :math:`\sigma > 0` (input units).
    num_classes : int
        Number of classes ``C >= 2``.
    batch_size : int
        Largest number of noisy inputs sent to the model at once.

    Examples
    --------
    >>> model = torch.nn.Linear(1, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0], [-1.0]]))  # class 0 iff x > 0
    >>> smoothed = SmoothedClassifier(model, sigma=1.0, num_classes=2)
    >>> gen = torch.Generator().manual_seed(0)
    >>> cert = smoothed.certify(torch.tensor([[2.0]]), n0=100, n=10_000, alpha=0.001, generator=gen)
    >>> cert.prediction, bool(1.8 < cert.radius < 2.0)  # the true distance to the boundary is 2
    (tensor([0]), True)
    """

    def __init__(self, model: Callable[[Tensor], Tensor], sigma: float, num_classes: int, batch_size: int = 1000):
        if not callable(model):
            raise TypeError(f"Expected `model` to be callable but got {type(model).__name__}")
        self.model = model
        self.sigma = check_positive("sigma", sigma)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)

    def __repr__(self) -> str:
        return f"SmoothedClassifier(sigma={self.sigma}, num_classes={self.num_classes}, batch_size={self.batch_size})"

    def sample_counts(self, inputs: Tensor, num: int, *, generator: torch.Generator | None = None) -> Tensor:
        r"""Counts of the base classifier's predictions on ``num`` noisy copies of each example.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` examples.
        num : int
            Noise samples per example.
        generator : torch.Generator, optional
            Random source (on the inputs' device).

        Returns
        -------
        Tensor
            ``(N, C)`` int64 counts, each row summing to ``num``.

        Raises
        ------
        ValueError
            If the model returns logits of another shape, or NaN or inf logits (they would win the
            vote through ``argmax``).
        """
        check_tensor("inputs", inputs)
        n = check_batch("inputs", [inputs])
        check_float_inputs("inputs", (inputs,), self.model)
        num = check_int("num", num, minimum=1)
        c = self.num_classes
        counts = torch.zeros(n * c, dtype=torch.long, device=inputs.device)
        with preserved_state(self.model, train=False), torch.no_grad():
            for rows in chunks(n * num, self.batch_size):
                example = torch.arange(rows.start, rows.stop, device=inputs.device) // num
                x = inputs[example]
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                logits = self.model(x + self.sigma * noise)
                if logits.shape != (x.shape[0], c):
                    raise ValueError(
                        f"Expected `model` to return logits of shape ({x.shape[0]}, {c}) but got {tuple(logits.shape)}"
                    )
                # argmax takes NaN for the largest value: a NaN logit would win votes (and a radius)
                if not bool(torch.isfinite(logits).all()):
                    raise ValueError("Expected `model` to return finite logits but got NaN or inf on noisy inputs")
                counts += torch.bincount(example * c + logits.argmax(dim=1), minlength=n * c)
        return counts.view(n, c)

    def predict(self, inputs: Tensor, n: int, alpha: float, *, generator: torch.Generator | None = None) -> Tensor:
        r"""Smoothed prediction :math:`g(x)`, or :data:`ABSTAIN` when the vote is not significant.

        With the two largest counts :math:`n_A \ge n_B` of ``n`` noise samples, the prediction
        is returned when the two-sided binomial test of :math:`n_A` out of :math:`n_A + n_B` at
        :math:`p = 1/2` rejects at level ``alpha``:

        .. math::

            \text{p-value} = \min\big(1,\; 2\, \mathbb{P}(\operatorname{Bin}(n_A + n_B, 1/2) \ge n_A)\big)
            \le \alpha .

        Then :math:`\mathbb{P}(\text{prediction} \ne g(x)) \le \alpha` (Cohen et al. 2019, Thm. 2).

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` examples.
        n : int
            Noise samples per example.
        alpha : float
            Error probability in ``(0, 1)``.
        generator : torch.Generator, optional
            Random source (on the inputs' device).

        Returns
        -------
        Tensor
            ``(N,)`` int64 classes, ``-1`` where the classifier abstains.
        """
        from scipy import stats

        alpha = _check_alpha(alpha)
        counts = self.sample_counts(inputs, n, generator=generator)
        top = counts.topk(2, dim=1)
        n_a, n_b = top.values[:, 0].cpu().numpy(), top.values[:, 1].cpu().numpy()
        p_value = torch.as_tensor(2 * stats.binom.sf(n_a - 1, n_a + n_b, 0.5)).clamp(max=1.0)
        keep = (p_value <= alpha).to(counts.device)
        return torch.where(keep, top.indices[:, 0], torch.full_like(top.indices[:, 0], ABSTAIN))

    def certify(
        self, inputs: Tensor, n0: int, n: int, alpha: float, *, generator: torch.Generator | None = None
    ) -> Certificate:
        r"""Certified L2 radius around each example (Cohen et al. 2019, ``CERTIFY``).

        The top class :math:`\hat c_A` is chosen from ``n0`` samples; ``n`` fresh samples give
        :math:`n_A` votes for it and the one-sided Clopper-Pearson bound

        .. math::

            \underline{p_A} = B^{-1}(\alpha;\, n_A,\, n - n_A + 1), \qquad
            R = \sigma\, \Phi^{-1}(\underline{p_A}),

        with :math:`B^{-1}` the Beta quantile function. If :math:`\underline{p_A} < 1/2` the
        classifier abstains (radius 0). With probability at least :math:`1 - \alpha`, a returned
        class is :math:`g(x)` and :math:`g` is constant on the L2 ball of radius :math:`R`.

        Parameters
        ----------
        inputs : Tensor
            ``(N, *shape)`` examples.
        n0 : int
            Samples used to select the class.
        n : int
            Samples used to estimate its probability.
        alpha : float
            Error probability in ``(0, 1)``.
        generator : torch.Generator, optional
            Random source (on the inputs' device).

        Returns
        -------
        Certificate
            Predictions, radii, lower bounds and counts, all ``(N,)`` (counts ``(N, C)``), on the
            inputs' device.
        """
        from scipy import stats

        n0 = check_int("n0", n0, minimum=1)
        n = check_int("n", n, minimum=1)
        alpha = _check_alpha(alpha)
        guess = self.sample_counts(inputs, n0, generator=generator).argmax(dim=1)
        counts = self.sample_counts(inputs, n, generator=generator)
        n_a = counts.gather(1, guess.unsqueeze(1)).squeeze(1).cpu().numpy()
        # Beta(0, .) is degenerate: no votes give a lower bound of 0
        p_lower_np = stats.beta.ppf(alpha, n_a.clip(min=1), n - n_a + 1) * (n_a > 0)
        p_lower = torch.as_tensor(p_lower_np, dtype=torch.float64, device=inputs.device)
        certified = p_lower >= 0.5
        radius = torch.where(
            certified,
            self.sigma * torch.as_tensor(stats.norm.ppf(p_lower_np), dtype=torch.float64, device=inputs.device),
            torch.zeros_like(p_lower),
        )
        prediction = torch.where(certified, guess, torch.full_like(guess, ABSTAIN))
        return Certificate(prediction=prediction, radius=radius, p_lower=p_lower, counts=counts)
