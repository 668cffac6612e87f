import math

import pytest
import torch

from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore, SubspaceGaussianMixtureScore


def _random_spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_full_covariance_score_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    covs = torch.stack([_random_spd(4, gen) for _ in range(3)])
    gm = GaussianMixtureScore(
        torch.randn(3, 4, generator=gen, dtype=torch.float64), covs, torch.tensor([1.0, 2.0, 3.0])
    )
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    for sigma in (0.0, 0.7):
        (g,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(gm.score(x.detach(), sigma), g)
        dist = torch.distributions.MultivariateNormal(gm.means[1], covs[1] + sigma**2 * torch.eye(4))
        torch.testing.assert_close(gm.class_log_likelihoods(x.detach(), sigma)[:, 1], dist.log_prob(x.detach()))


def test_subspace_mixture_equals_full_covariance_mixture():
    gen = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(6, 2, generator=gen, dtype=torch.float64))[0].T
    means, stds, tau = (
        torch.randn(2, 2, generator=gen, dtype=torch.float64),
        torch.tensor([[0.5, 1.0], [2.0, 0.3]]),
        0.2,
    )
    sm = SubspaceGaussianMixtureScore(basis, means, stds, tau)
    covs = torch.stack([basis.T @ torch.diag(stds[c] ** 2).double() @ basis + tau**2 * torch.eye(6) for c in range(2)])
    gm = GaussianMixtureScore(means @ basis, covs)
    x = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    for sigma in (0.0, 0.5):
        torch.testing.assert_close(sm.score(x, sigma), gm.score(x, sigma))
        torch.testing.assert_close(sm.score(x, sigma, 1), gm.score(x, sigma, 1))
        torch.testing.assert_close(sm.log_prob(x, sigma), gm.log_prob(x, sigma))


def test_bayes_classifier_gradient_is_the_score_difference():
    gen = torch.Generator().manual_seed(2)
    sm = SubspaceGaussianMixtureScore(torch.randn(3, 10, generator=gen), torch.randn(4, 3, generator=gen), 0.7, 0.1)
    clf = BayesOptimalClassifier(sm, sigma=0.3)
    x = torch.randn(5, 10, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    (g,) = torch.autograd.grad(clf(x).gather(1, y[:, None]).sum(), x)
    expected = sm.score(x.detach(), 0.3, y) - sm.score(x.detach(), 0.3)
    torch.testing.assert_close(g, expected)


def test_denoise_is_tweedie():
    gm = GaussianMixtureScore(torch.zeros(1, 3), torch.eye(3) * 4.0)
    x = torch.randn(2, 3)
    # posterior mean of x0 ~ N(0, 4I) given x = x0 + N(0, 1): 4/5 x
    torch.testing.assert_close(gm.denoise(x, 1.0), 0.8 * x)


def test_batch_size_does_not_change_the_result():
    gm = GaussianMixtureScore(torch.randn(3, 5), torch.eye(5))
    x = torch.randn(11, 5)
    torch.testing.assert_close(gm.score(x, 0.5, batch_size=4), gm.score(x, 0.5))
    torch.testing.assert_close(
        gm.score(x, 0.5, torch.arange(11) % 3, batch_size=2), gm.score(x, 0.5, torch.arange(11) % 3)
    )


def test_bad_input():
    gm = GaussianMixtureScore(torch.zeros(2, 3), torch.eye(3))
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="`sigma` to be a finite number >= 0"):
        gm.score(x, -1.0)
    with pytest.raises(ValueError, match=r"`target` labels in \[0, 2\)"):
        gm.score(x, 0.1, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"`target` to have shape \(2,\)"):
        gm.score(x, 0.1, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="per-example shape"):
        gm.score(torch.randn(2, 4), 0.1)
    with pytest.raises(ValueError, match="finite"):
        gm.score(torch.full((2, 3), float("nan")), 0.1)
    with pytest.raises(ValueError, match="`covariances`"):
        GaussianMixtureScore(torch.zeros(2, 3), torch.eye(4))
    with pytest.raises(ValueError, match="`weights`"):
        GaussianMixtureScore(torch.zeros(2, 3), torch.eye(3), torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match="`mixture`"):
        BayesOptimalClassifier(torch.nn.Linear(2, 2))


def _two_class_1d(weights=None):
    return GaussianMixtureScore(torch.tensor([[-1.0], [1.0]], dtype=torch.float64), torch.eye(1), weights)


def test_default_weights_are_uniform_in_the_density():
    gen = torch.Generator().manual_seed(4)
    means = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    gm = GaussianMixtureScore(means, torch.eye(2, dtype=torch.float64))
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    for sigma in (0.0, 0.5):
        comps = [torch.distributions.MultivariateNormal(m, (1 + sigma**2) * eye) for m in means]
        ref = torch.logsumexp(torch.stack([c.log_prob(x) for c in comps], dim=-1), dim=-1) - math.log(3)
        torch.testing.assert_close(gm.log_prob(x, sigma), ref, rtol=1e-12, atol=1e-12)


def test_log_posterior_and_the_bayes_classifier_default_to_sigma_zero():
    # N(-1, 1) and N(1, 1) with priors 3:1: the log-odds of class 1 are 2x / (1 + sigma^2) - log 3
    gm = _two_class_1d(torch.tensor([3.0, 1.0]))
    x = torch.tensor([[-0.5], [0.0], [1.5]], dtype=torch.float64)
    p1 = torch.sigmoid(2 * x[:, 0] - math.log(3))
    expected = torch.stack([1 - p1, p1], dim=1).log()
    torch.testing.assert_close(gm.log_posterior(x), expected, rtol=1e-12, atol=1e-12)
    clf = BayesOptimalClassifier(gm)
    assert clf.sigma == 0.0
    torch.testing.assert_close(clf(x), expected, rtol=1e-12, atol=1e-12)
    p1_smoothed = torch.sigmoid(x[:, 0] - math.log(3))  # sigma = 1 halves the log-likelihood ratio
    torch.testing.assert_close(gm.log_posterior(x, 1.0)[:, 1], p1_smoothed.log(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_raw_score_is_returned_in_the_inputs_dtype(dtype):
    gm = _two_class_1d()
    x = torch.tensor([[0.5], [-2.0]], dtype=dtype)
    for target in (None, torch.tensor([0, 1])):
        raw = gm.raw_score(x, 0.5, target)
        assert raw.dtype == dtype and raw.shape == x.shape
        torch.testing.assert_close(raw, gm.score(x, 0.5, target), rtol=0, atol=0)
    # the conditional score of N(+-1, 1) smoothed by sigma = 0.5: (m - x) / 1.25
    torch.testing.assert_close(
        gm.raw_score(x, 0.5, torch.tensor([0, 1])), torch.tensor([[-1.5 / 1.25], [3.0 / 1.25]], dtype=dtype)
    )


def test_subspace_mixture_allows_zero_on_subspace_stds():
    gen = torch.Generator().manual_seed(5)
    basis = torch.linalg.qr(torch.randn(4, 2, generator=gen, dtype=torch.float64))[0].T
    means = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    tau = 0.3
    for stds in (0.0, torch.tensor([[0.0, 1.0], [0.5, 0.0]], dtype=torch.float64)):
        sm = SubspaceGaussianMixtureScore(basis, means, stds, tau)
        s = torch.as_tensor(stds, dtype=torch.float64).expand(2, 2)
        covs = torch.stack([basis.T @ torch.diag(s[c] ** 2) @ basis + tau**2 * torch.eye(4) for c in range(2)])
        gm = GaussianMixtureScore(means @ basis, covs)
        x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(sm.score(x, 0.2), gm.score(x, 0.2))
        torch.testing.assert_close(sm.log_prob(x, 0.0), gm.log_prob(x, 0.0))
    with pytest.raises(ValueError, match="`stds` to be >= 0"):
        SubspaceGaussianMixtureScore(basis, means, -0.1, tau)
