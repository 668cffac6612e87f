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
