"""Exact mixtures in their general form (non-uniform priors, non-isotropic covariances) vs float64 references.

The references are written independently of the package: densities from
``torch.distributions.MultivariateNormal`` with the priors added by hand, scores as central finite
differences of those log-densities, posteriors from Bayes' rule.
"""

import pytest
import torch
from torch.distributions import MultivariateNormal

from captum_pags.scores import BayesOptimalClassifier, GaussianMixtureScore, SubspaceGaussianMixtureScore

SEEDS = [0, 1, 2]
SIGMAS = [0.0, 0.3]
PRIORS = torch.tensor([0.55, 0.3, 0.15], dtype=torch.float64)


def _reference_terms(means, covs, priors, sigma):
    """Per-class log-likelihood functions of the smoothed mixture, and log priors."""
    d = means.shape[1]
    comps = [MultivariateNormal(m, c + sigma**2 * torch.eye(d, dtype=torch.float64)) for m, c in zip(means, covs)]
    return (lambda x: torch.stack([comp.log_prob(x) for comp in comps], dim=-1)), priors.log()


def _finite_difference(f, x, h=1e-5):
    """Central differences of a function of ``(N, D)`` points that returns ``(N,)``, one coordinate at a time."""
    grad = torch.zeros_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def _general_mixture(seed, d=5):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(3, d, generator=gen, dtype=torch.float64)
    a = torch.randn(3, d, d, generator=gen, dtype=torch.float64)
    scales = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    covs = scales * (a @ a.transpose(1, 2) / d) * scales[:, None] + 0.05 * torch.eye(d, dtype=torch.float64)
    return means, covs, gen


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_full_mixture_matches_an_independent_reference(seed, sigma):
    means, covs, gen = _general_mixture(seed)
    mixture = GaussianMixtureScore(means, covs, 2 * PRIORS)  # normalised on construction
    class_ll, log_pi = _reference_terms(means, covs, PRIORS, sigma)
    x = means[torch.tensor([0, 1, 2, 0, 2])] + torch.randn(5, 5, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1])

    def log_p(z):
        return torch.logsumexp(class_ll(z) + log_pi, dim=-1)

    def log_post_y(z):
        return (class_ll(z) + log_pi).gather(1, y[:, None]).squeeze(1) - log_p(z)

    torch.testing.assert_close(mixture.log_prob(x, sigma), log_p(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixture.class_log_likelihoods(x, sigma), class_ll(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixture.score(x, sigma), _finite_difference(log_p, x), rtol=1e-6, atol=1e-7)
    cond = _finite_difference(lambda z: class_ll(z).gather(1, y[:, None]).squeeze(1), x)
    torch.testing.assert_close(mixture.score(x, sigma, y), cond, rtol=1e-6, atol=1e-7)
    # the Bayes-optimal classifier: logits are the exact log posteriors, their gradient the Bayes difference
    clf = BayesOptimalClassifier(mixture, sigma)
    expected_post = class_ll(x) + log_pi - log_p(x)[:, None]
    torch.testing.assert_close(clf(x), expected_post, rtol=1e-12, atol=1e-12)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(clf(xg).gather(1, y[:, None]).sum(), xg)
    torch.testing.assert_close(g, _finite_difference(log_post_y, x), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(mixture.bayes_score(x, sigma, y), g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_subspace_mixture_matches_an_independent_reference(seed, sigma):
    gen = torch.Generator().manual_seed(seed)
    d, k, tau = 7, 3, 0.2
    basis = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))[0].T
    means = 2 * torch.randn(3, k, generator=gen, dtype=torch.float64)
    stds = 0.3 + torch.rand(3, k, generator=gen, dtype=torch.float64)  # per class and per direction
    mixture = SubspaceGaussianMixtureScore(basis, means, stds, tau, weights=PRIORS)
    covs = torch.stack(
        [basis.T @ torch.diag(stds[c] ** 2) @ basis + tau**2 * torch.eye(d, dtype=torch.float64) for c in range(3)]
    )
    class_ll, log_pi = _reference_terms(means @ basis, covs, PRIORS, sigma)
    x = (means[torch.tensor([0, 1, 2, 1])] @ basis) + 0.7 * torch.randn(4, d, generator=gen, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 1])

    def log_p(z):
        return torch.logsumexp(class_ll(z) + log_pi, dim=-1)

    torch.testing.assert_close(mixture.log_prob(x, sigma), log_p(x), rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(mixture.score(x, sigma), _finite_difference(log_p, x), rtol=1e-6, atol=1e-7)
    cond = _finite_difference(lambda z: class_ll(z).gather(1, y[:, None]).squeeze(1), x)
    torch.testing.assert_close(mixture.score(x, sigma, y), cond, rtol=1e-6, atol=1e-7)
    expected_post = class_ll(x) + log_pi - log_p(x)[:, None]
    torch.testing.assert_close(BayesOptimalClassifier(mixture, sigma)(x), expected_post, rtol=1e-11, atol=1e-11)
    # the Bayes difference lies in the subspace: its off-subspace part vanishes
    bayes = mixture.bayes_score(x, sigma, y)
    off = bayes - (bayes @ basis.T) @ basis
    assert float(off.abs().max()) < 1e-12 * float(bayes.abs().max()) + 1e-14


def test_priors_change_the_answer_so_the_references_can_tell():
    """With uniform priors the posteriors and the unconditional score differ measurably."""
    means, covs, gen = _general_mixture(0)
    skewed, uniform = GaussianMixtureScore(means, covs, PRIORS), GaussianMixtureScore(means, covs)
    x = 0.5 * (means[0] + means[1]) + 0.1 * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    assert (skewed.log_posterior(x) - uniform.log_posterior(x)).abs().max() > 0.1
    assert (skewed.score(x, 0.3) - uniform.score(x, 0.3)).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8])
def test_other_input_dtypes_give_the_float64_answer_to_their_precision(dtype):
    means, covs, _ = _general_mixture(1, d=4)
    mixture = GaussianMixtureScore(3 * means, 4 * covs, PRIORS)
    x64 = torch.tensor([[0.0, 2.0, 3.0, 1.0], [5.0, 1.0, 0.0, 2.0]], dtype=torch.float64)  # exact in every dtype
    x = x64.to(dtype)
    out = mixture.score(x, 0.5, [0, 2])
    expected_dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    assert out.dtype == expected_dtype and torch.isfinite(out).all()
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(out.double(), mixture.score(x64, 0.5, [0, 2]), rtol=tol, atol=tol)
    clf_out = BayesOptimalClassifier(mixture, 0.5)(x)
    assert clf_out.dtype == expected_dtype and torch.isfinite(clf_out).all()
