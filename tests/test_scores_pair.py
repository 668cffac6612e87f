"""ScorePair: a conditional model without a null label plus an unconditional one, at one sigma."""

import math

import pytest
import torch
from _score_fakes import ExactUNet, ExactUNetLearnedTime, log_sigmas
from conftest import assert_model_unchanged, model_snapshot
from diffusers import DDPMScheduler

from captum_pags.attr import ScoreAttribution
from captum_pags.metrics import perceptual_alignment
from captum_pags.scores import DenoiserScore, DiffusersScore, GaussianMixtureScore, ScorePair

SHAPE = (1, 3, 3)
D = 9
C = 3


def _mixture(seed):
    """Non-uniform priors, non-isotropic class covariances, images in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    means = 0.5 + 0.15 * torch.randn(C, *SHAPE, generator=gen, dtype=torch.float64)
    a = torch.randn(C, D, D, generator=gen, dtype=torch.float64)
    covs = 0.01 * a @ a.transpose(1, 2) / D + 0.005 * torch.eye(D, dtype=torch.float64)
    return GaussianMixtureScore(means, covs, torch.tensor([0.6, 0.3, 0.1]))


def _models(mixture, cond_scheduler, uncond_scheduler, fake=ExactUNet):
    """(null-label model, conditional-only, unconditional-only), all exact fakes in float64."""
    null = DiffusersScore(fake(mixture, cond_scheduler, "epsilon", null_class=C).double(), cond_scheduler, null_class=C)
    cond = DiffusersScore(fake(mixture, cond_scheduler, "epsilon").double(), cond_scheduler)
    uncond = DiffusersScore(fake(mixture, uncond_scheduler, "epsilon", conditional=False).double(), uncond_scheduler)
    return null, cond, uncond


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_equals_the_null_label_models_bayes_difference(seed):
    mixture = _mixture(seed)
    scheduler = DDPMScheduler()
    null, cond, uncond = _models(mixture, scheduler, scheduler)
    pair = ScorePair(cond, uncond)
    assert (pair.supports_conditional, pair.supports_unconditional, pair.supports_bayes) == (True, True, True)
    assert (cond.supports_unconditional, cond.supports_bayes, uncond.supports_conditional) == (False, False, False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(6, *SHAPE, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    assert pair.resolve_sigma(0.25) == null.resolve_sigma(0.25)
    torch.testing.assert_close(pair.bayes_score(x, 0.25, y), null.bayes_score(x, 0.25, y), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pair.score(x, 0.25, y), null.score(x, 0.25, y), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pair.score(x, 0.25), null.score(x, 0.25), rtol=1e-9, atol=1e-9)
    attr = ScoreAttribution(pair, 0.25, mode="bayes").attribute(x, target=y)
    torch.testing.assert_close(attr, null.bayes_score(x, 0.25, y), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_pair_on_two_timestep_grids_evaluates_one_sigma_exactly(seed):
    mixture = _mixture(seed)
    grid_c, grid_u = DDPMScheduler(), DDPMScheduler(num_train_timesteps=700, beta_schedule="squaredcos_cap_v2")
    _, cond, uncond = _models(mixture, grid_c, grid_u)
    pair = ScorePair(cond, uncond)
    level = pair.resolve_sigma(0.25)
    assert level == cond.resolve_sigma(0.25)  # the conditional model's own grid level
    assert not math.isclose(uncond.resolve_sigma(level), level, rel_tol=1e-6)  # off the other grid
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 0, 2])
    exact = mixture.score(x, level, y) - mixture.score(x, level)
    torch.testing.assert_close(pair.bayes_score(x, 0.25, y), exact, rtol=1e-8, atol=1e-8)
    assert uncond.unet.timesteps_seen[-1] % 1 != 0  # reached by interpolating the timestep
    # mixing the two nearest grid levels (what a hand-made pair does) is measurably wrong
    naive = cond.score(x, 0.25, y) - uncond.score(x, 0.25)
    assert (naive - exact).abs().max() > 100 * (pair.bayes_score(x, 0.25, y) - exact).abs().max() + 1e-9


def test_pair_refuses_a_sigma_neither_model_can_interpolate():
    mixture = _mixture(0)
    grid_c, grid_u = DDPMScheduler(), DDPMScheduler(num_train_timesteps=700, beta_schedule="squaredcos_cap_v2")
    _, cond, uncond = _models(mixture, grid_c, grid_u, fake=ExactUNetLearnedTime)
    pair = ScorePair(cond, uncond)
    with pytest.raises(ValueError, match="`sigma` to be a noise level both models evaluate exactly"):
        pair.resolve_sigma(0.25)
    on_both = math.exp(float(log_sigmas(grid_c)[0])) / 2  # not on grid_u either
    with pytest.raises(ValueError, match="both models evaluate exactly"):
        pair.score(torch.rand(1, *SHAPE, dtype=torch.float64), on_both)


def test_pair_with_an_exact_unconditional_model_and_a_denoiser():
    mixture = _mixture(3)
    cond = DenoiserScore(lambda x, s, class_labels: mixture.denoise(x, float(s[0]), class_labels), C)
    pair = ScorePair(cond, mixture)
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(pair.bayes_score(x, 0.3, y), mixture.bayes_score(x, 0.3, y), rtol=1e-9, atol=1e-9)
    assert pair.input_shape == torch.Size(SHAPE) and pair.sigma_range == (0.0, math.inf)


def test_capability_errors_say_what_to_supply():
    mixture = _mixture(0)
    scheduler = DDPMScheduler()
    _, cond, uncond = _models(mixture, scheduler, scheduler)
    x = torch.rand(2, *SHAPE, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"no unconditional score; pass an unconditional model as well \(`unconditional=`\)"
    ):
        cond.score(x, 0.25)
    with pytest.raises(ValueError, match=r"`unconditional=`"):
        cond.bayes_score(x, 0.25, [0, 1])
    with pytest.raises(ValueError, match=r"mode='bayes'.*`unconditional=`"):
        ScoreAttribution(cond, 0.25, mode="bayes")
    with pytest.raises(ValueError, match=r"mode='conditional'.*pass a class-conditional model"):
        ScoreAttribution(uncond, 0.25, mode="conditional")
    with pytest.raises(ValueError, match=r"`target=None` for this unconditional score model.*ScorePair"):
        uncond.score(x, 0.25, [0, 1])
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, C)).double()
    with pytest.raises(ValueError, match=r"score='bayes'.*`unconditional=`"):
        perceptual_alignment(classifier, x, cond, 0.25, target=[0, 1], score="bayes")
    with pytest.raises(ValueError, match=r"score='unconditional'.*`unconditional=`"):
        perceptual_alignment(classifier, x, cond, 0.25, target=[0, 1], score="unconditional")
    # what it can give, it gives
    assert torch.isfinite(cond.score(x, 0.25, [0, 1])).all() and torch.isfinite(uncond.score(x, 0.25)).all()


def test_pair_construction_is_checked():
    mixture = _mixture(0)
    scheduler = DDPMScheduler()
    null, cond, uncond = _models(mixture, scheduler, scheduler)
    with pytest.raises(TypeError, match="Expected `conditional` to be a captum_pags ScoreModel"):
        ScorePair(cond.unet, uncond)
    with pytest.raises(ValueError, match="Expected `conditional` to be a class-conditional"):
        ScorePair(uncond, uncond)
    with pytest.raises(ValueError, match="Expected `unconditional` to have unconditional scores"):
        ScorePair(cond, cond)
    other_shape = GaussianMixtureScore(torch.zeros(2, 4), torch.eye(4))
    with pytest.raises(ValueError, match="the same input_shape"):
        ScorePair(_denoiser_with_shape(SHAPE), other_shape)
    other_range = DiffusersScore(uncond.unet, scheduler, data_range=(0.0, 255.0))
    with pytest.raises(ValueError, match="the same data_range"):
        ScorePair(cond, other_range)
    narrow = DenoiserScore(lambda x, s: x, sigma_range=(5.0, 6.0))
    with pytest.raises(ValueError, match="share noise levels"):
        ScorePair(_denoiser_with_shape(SHAPE), narrow)
    ScorePair(null, uncond)  # a null-label model may be paired too


def _denoiser_with_shape(shape):
    return DenoiserScore(lambda x, s, class_labels: x, C, input_shape=shape, sigma_range=(0.0, 1.0))


def test_pair_leaves_both_networks_as_they_were():
    mixture = _mixture(1)
    scheduler = DDPMScheduler()
    _, cond, uncond = _models(mixture, scheduler, scheduler)
    cond.unet.train()
    uncond.unet.weight.grad = torch.ones_like(uncond.unet.weight)
    pair = ScorePair(cond, uncond)
    assert pair.networks() == [cond.unet, uncond.unet]
    snaps = [model_snapshot(cond.unet), model_snapshot(uncond.unet)]
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    pair.bayes_score(x, 0.25, [0, 1, 2])
    with pytest.raises(ValueError):
        pair.bayes_score(x, 0.25, [0, 1, 3])
    assert_model_unchanged(cond.unet, snaps[0])
    assert_model_unchanged(uncond.unet, snaps[1])


def test_a_pair_of_exact_models_allows_sigma_zero():
    cond, uncond = _mixture(0), _mixture(1)
    pair = ScorePair(cond, uncond)
    assert pair.allows_zero_sigma is True
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    torch.testing.assert_close(pair.score(x, 0.0, y), cond.score(x, 0.0, y), rtol=0, atol=0)
    torch.testing.assert_close(pair.score(x, 0.0), uncond.score(x, 0.0), rtol=0, atol=0)
    with_denoiser = ScorePair(_denoiser_with_shape(SHAPE), uncond)
    assert with_denoiser.allows_zero_sigma is False
    with pytest.raises(ValueError, match="`sigma` to be a finite number > 0"):
        with_denoiser.score(x, 0.0, y)


def test_pair_prefers_a_level_both_models_evaluate_as_they_are():
    # a continuous conditional model and an unconditional one on a grid that could interpolate: the grid level
    # (which the conditional model evaluates exactly as it is) wins over interpolating the grid model
    mixture = _mixture(2)
    scheduler = DDPMScheduler()
    uncond = DiffusersScore(ExactUNet(mixture, scheduler, "epsilon", conditional=False).double(), scheduler)
    pair = ScorePair(mixture, uncond)
    grid_level = uncond.resolve_sigma(0.25)
    assert not math.isclose(grid_level, 0.25, rel_tol=1e-6)
    assert pair.resolve_sigma(0.25) == grid_level
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    exact = mixture.score(x, grid_level, y) - mixture.score(x, grid_level)
    torch.testing.assert_close(pair.bayes_score(x, 0.25, y), exact, rtol=1e-8, atol=1e-8)
    assert all(float(t).is_integer() for t in uncond.unet.timesteps_seen)  # on the grid, not interpolated


def test_pair_refuses_inputs_without_a_batch_dimension_naming_them():
    mixture = _mixture(0)
    pair = ScorePair(mixture, mixture)
    with pytest.raises(ValueError, match="Expected `inputs` to have a batch dimension"):
        pair.score(torch.tensor(0.5, dtype=torch.float64), 0.3, None)
