"""The paper's gradient/score pairings of perceptual_alignment, exact on Gaussian mixtures.

The Bayes-optimal classifier of a mixture returns log posteriors, so its logit gradient is the
Bayes score difference :math:`s(x \\mid c) - s(x)`; every pairing has a closed form built from the
mixture's own scores. Non-uniform priors, so that prior terms cannot cancel by accident.
"""

import math

import pytest
import torch
from captum.attr import Saliency

from captum_pags.metrics import perceptual_alignment
from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore


def _cosine64(a, b):
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _mixture(seed: int, c: int = 3, d: int = 4):
    gen = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(c, d, generator=gen, dtype=torch.float64)
    factors = torch.randn(c, d, d, generator=gen, dtype=torch.float64) * 0.3
    covs = factors @ factors.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    weights = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)[:c]
    x = torch.randn(8, d, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, c, (8,), generator=gen)
    return GaussianMixtureScore(means, covs, weights), x, y


def _scores(mixture, x, sigma):
    """(C, N, D) conditional scores and (N, D) unconditional score."""
    c = mixture.num_classes
    cond = torch.stack([mixture.score(x, sigma, torch.full((x.shape[0],), k)) for k in range(c)])
    return cond, mixture.score(x, sigma, None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_pairing_matches_its_closed_form(seed):
    sigma = 0.4
    mixture, x, y = _mixture(seed)
    model = BayesOptimalClassifier(mixture, sigma)
    cond, uncond = _scores(mixture, x, sigma)
    rows = torch.arange(x.shape[0])
    pred = model(x).argmax(1)
    c = mixture.num_classes
    cases = {
        # released script: gradient of the logit sum against the unconditional score (no label)
        ("logit_sum", "unconditional", "true", None): (cond.sum(0) - c * uncond, uncond),
        # Figure 3: the label logit's gradient against the conditional score
        ("logit", "conditional", "true", y): (cond[y, rows] - uncond, cond[y, rows]),
        # ImageNet: gradient at the predicted class, score at the true label
        ("logit", "conditional", "predicted", y): (cond[pred, rows] - uncond, cond[y, rows]),
        ("log_softmax", "bayes", "predicted", y): (cond[pred, rows] - uncond, cond[y, rows] - uncond),
        ("logit_sum", "bayes", "true", y): (cond.sum(0) - c * uncond, cond[y, rows] - uncond),
    }
    for (gradient, score, gradient_target, target), (g, s) in cases.items():
        got = perceptual_alignment(
            model, x, mixture, sigma, target, gradient=gradient, score=score, gradient_target=gradient_target
        )
        torch.testing.assert_close(got, _cosine64(g, s), rtol=1e-10, atol=1e-12)
    # the default pairing is exact for the Bayes-optimal classifier, the predicted one only where it is right
    torch.testing.assert_close(perceptual_alignment(model, x, mixture, sigma, y), torch.ones(8, dtype=torch.float64))
    right = pred == y
    got = perceptual_alignment(model, x, mixture, sigma, y, gradient_target="predicted")
    torch.testing.assert_close(got[right], torch.ones(int(right.sum()), dtype=torch.float64))
    assert bool((got[~right] < 1 - 1e-6).all())


def test_predicted_target_differs_from_the_true_one_where_the_model_errs():
    mixture, x, _ = _mixture(5)
    model = BayesOptimalClassifier(mixture, 0.4)
    pred = model(x).argmax(1)
    wrong = (pred + 1) % 3
    true_grad = perceptual_alignment(model, x, mixture, 0.4, wrong, gradient="logit", score="conditional")
    pred_grad = perceptual_alignment(
        model, x, mixture, 0.4, wrong, gradient="logit", score="conditional", gradient_target="predicted"
    )
    assert not torch.allclose(true_grad, pred_grad)


def test_attribution_classes_get_the_chosen_class_score():
    mixture, x, y = _mixture(1)
    model = BayesOptimalClassifier(mixture, 0.4)
    for gradient in ("log_softmax", "logit", "logit_sum"):
        for gradient_target in ("true", "predicted"):
            kwargs = {"gradient": gradient, "gradient_target": gradient_target, "score": "conditional"}
            plain = perceptual_alignment(model, x, mixture, 0.4, y, **kwargs)
            sal = perceptual_alignment(
                model, x, mixture, 0.4, y, attribution=Saliency, attribute_kwargs={"abs": False}, **kwargs
            )
            torch.testing.assert_close(sal, plain, rtol=1e-10, atol=1e-12)


def test_pairing_arguments_are_checked():
    mixture, x, y = _mixture(0)
    model = BayesOptimalClassifier(mixture, 0.4)
    with pytest.raises(ValueError, match="`gradient_target` to be one of 'true', 'predicted'"):
        perceptual_alignment(model, x, mixture, 0.4, y, gradient_target="argmax")
    with pytest.raises(ValueError, match="Expected `target`.*only gradient='logit_sum' with score='unconditional'"):
        perceptual_alignment(model, x, mixture, 0.4, None, gradient="logit_sum")
    with pytest.raises(TypeError, match="use gradient_target='predicted'"):
        perceptual_alignment(model, x, mixture, 0.4, "predicted")
    with pytest.raises(ValueError, match="`gradient` to be one of 'log_softmax', 'logit', 'logit_sum'"):
        perceptual_alignment(model, x, mixture, 0.4, y, gradient="softmax")

    def nan_model(v):
        return torch.full((v.shape[0], 3), math.nan, dtype=v.dtype)

    with pytest.raises(ValueError, match="NaN"):
        perceptual_alignment(nan_model, x, mixture, 0.4, y, gradient_target="predicted")
