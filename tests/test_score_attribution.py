import pytest
import torch
from captum.attr import NoiseTunnel
from captum.metrics import sensitivity_max

from captum_pags.attr import ScoreAttribution
from captum_pags.scores import DenoiserScore, GaussianMixtureScore

D = 8


@pytest.fixture(scope="module")
def linear_mixture():
    """Shared covariance: the class-conditional score -(S + sigma^2 I)^-1 (x - m_c) is linear in x."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(D, D, generator=gen, dtype=torch.float64)
    cov = 0.3 * a @ a.T / D + 0.2 * torch.eye(D, dtype=torch.float64)
    means = 4.0 * torch.randn(3, D, generator=gen, dtype=torch.float64)
    return GaussianMixtureScore(means, cov)


def _precision(mixture, sigma):
    return torch.linalg.inv(mixture.covariances[0] + sigma**2 * torch.eye(D, dtype=torch.float64))


def test_modes_match_the_score_model_and_the_bayes_classifier_gradient(gaussian_data):
    sigma = 0.3
    model = gaussian_data.score_model
    x, y = gaussian_data.sample(6, seed=1, dtype=torch.float64)
    cond = ScoreAttribution(model, sigma).attribute(x, target=y)
    uncond = ScoreAttribution(model, sigma, mode="unconditional").attribute(x)
    bayes = ScoreAttribution(model, sigma, mode="bayes").attribute(x, target=y)
    torch.testing.assert_close(cond, model.score(x, sigma, y))
    torch.testing.assert_close(uncond, model.score(x, sigma))
    # bayes = grad_x log p_sigma(y | x), the Bayes-optimal classifier's input gradient
    xr = x.clone().requires_grad_()
    logits = gaussian_data.bayes_classifier(sigma)(xr)
    (grad,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), xr)
    torch.testing.assert_close(bayes, grad)
    assert not bayes.requires_grad


def test_tuple_inputs_and_int_target(linear_mixture):
    x = torch.randn(3, D, dtype=torch.float64)
    sa = ScoreAttribution(linear_mixture, 0.5)
    (out,) = sa.attribute((x,), target=2)
    torch.testing.assert_close(out, linear_mixture.score(x, 0.5, 2))


def test_noise_tunnel_identity_and_smoothing_with_per_example_targets(linear_mixture):
    sigma = 0.4
    sa = ScoreAttribution(linear_mixture, sigma)
    x = torch.randn(4, D, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    nt = NoiseTunnel(sa)
    torch.testing.assert_close(nt.attribute(x, nt_samples=1, stdevs=0.0, target=y), sa.attribute(x, target=y))
    # smoothgrad of a linear map is the map at the mean noisy input, x + O(stdev / sqrt(n))
    smooth = nt.attribute(x, nt_type="smoothgrad", nt_samples=400, stdevs=0.01, target=y, nt_samples_batch_size=150)
    p = _precision(linear_mixture, sigma)
    expected = -(x - linear_mixture.means[y]) @ p.T
    bound = 5 * 0.01 / 400**0.5 * torch.linalg.matrix_norm(p, ord=2) * D**0.5
    assert float((smooth - expected).norm(dim=1).max()) < bound
    # a target expanded to the wrong example would be off by |P (m_c - m_c')|, far above the bound
    wrong = -(x - linear_mixture.means[y.roll(1)]) @ p.T
    assert float((wrong - expected).norm(dim=1).min()) > 100 * bound


def test_sensitivity_max_is_within_the_linear_bound(linear_mixture):
    sigma = 0.4
    sa = ScoreAttribution(linear_mixture, sigma, mode="conditional")
    x = torch.randn(5, D, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    radius = 0.02
    sens = sensitivity_max(sa.attribute, x, target=y, perturb_radius=radius, n_perturb_samples=8)
    p = _precision(linear_mixture, sigma)
    # ||P delta|| <= ||P||_2 * radius * sqrt(D) for delta in the L-inf ball; captum normalises by ||expl(x)||
    bound = torch.linalg.matrix_norm(p, ord=2) * radius * D**0.5 / sa.attribute(x, target=y).norm(dim=1)
    assert sens.shape == (5,)
    assert bool((sens > 0).all()) and bool((sens <= bound * (1 + 1e-6)).all())
    sens_bayes = sensitivity_max(
        ScoreAttribution(linear_mixture, sigma, mode="bayes").attribute, x, target=y, n_perturb_samples=4
    )
    assert sens_bayes.shape == (5,) and bool(torch.isfinite(sens_bayes).all())


def test_unconditional_mode_ignores_target_and_batch_size_chunks(linear_mixture):
    x = torch.randn(5, D, dtype=torch.float64)
    sa = ScoreAttribution(linear_mixture, 0.3, mode="unconditional", batch_size=2)
    torch.testing.assert_close(sa.attribute(x, target=[0, 1, 2, 0, 1]), linear_mixture.score(x, 0.3))
    torch.testing.assert_close(sa.forward_func(x), linear_mixture.score(x, 0.3))
    assert hasattr(ScoreAttribution.attribute, "__wrapped__")  # captum.log.log_usage, used by NoiseTunnel


def test_bad_inputs(linear_mixture):
    uncond_only = DenoiserScore(lambda x, s: x / (1 + s[:, None] ** 2))
    cond_only = DenoiserScore(lambda x, s, class_labels: x, num_classes=2)
    x = torch.randn(2, D)
    with pytest.raises(ValueError, match=r"Expected `mode` to be one of 'conditional', 'unconditional', 'bayes'"):
        ScoreAttribution(linear_mixture, 0.1, mode="joint")
    with pytest.raises(ValueError, match="Expected a class-conditional `score_model` for mode='bayes'"):
        ScoreAttribution(uncond_only, 0.1, mode="bayes")
    with pytest.raises(ValueError, match="Expected a class-conditional `score_model` for mode='conditional'"):
        ScoreAttribution(uncond_only, 0.1)
    with pytest.raises(ValueError, match="Expected a `score_model` with unconditional scores for mode='unconditional'"):
        ScoreAttribution(cond_only, 0.1, mode="unconditional")
    with pytest.raises(ValueError, match=r"Expected `sigma` to be a finite number > 0 but got -0.5"):
        ScoreAttribution(uncond_only, -0.5, mode="unconditional")
    with pytest.raises(TypeError, match="Expected `score_model` to be a captum_pags ScoreModel"):
        ScoreAttribution(lambda x: x, 0.1)
    with pytest.raises(ValueError, match="Expected `batch_size` to be >= 1 but got 0"):
        ScoreAttribution(linear_mixture, 0.1, batch_size=0)
    sa = ScoreAttribution(linear_mixture, 0.1)
    with pytest.raises(ValueError, match=r"Expected `target` \(class labels\) for mode='conditional' but got None"):
        sa.attribute(x)
    with pytest.raises(ValueError, match=r"Expected `inputs` to be one tensor \(or a 1-tuple\)"):
        sa.attribute((x, x), target=0)
    with pytest.raises(ValueError, match=r"Expected `target` labels in \[0, 3\)"):
        sa.attribute(x, target=3)
    with pytest.raises(ValueError, match="to hold finite values"):
        sa.attribute(torch.full((2, D), float("nan")), target=0)
