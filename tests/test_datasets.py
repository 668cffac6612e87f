import pytest
import torch

from captum_pags.datasets import GaussianSubspaceMixture, digits16_subspace, load_digits16


def test_samples_have_the_stated_statistics():
    data = GaussianSubspaceMixture(num_classes=2, intrinsic_dim=3, shape=20, on_std=0.5, off_std=0.01, seed=1)
    x, y = data.sample(4000, seed=0, dtype=torch.float64)
    coords = x @ data.basis.T
    resid = x - coords @ data.basis
    torch.testing.assert_close(coords[y == 0].mean(0), data.means[0], atol=0.05, rtol=0)
    torch.testing.assert_close(coords[y == 1].std(0), torch.full((3,), 0.5, dtype=torch.float64), atol=0.03, rtol=0)
    assert abs(float(resid.pow(2).sum(1).mean()) - 17 * 0.01**2) < 1e-4


def test_seeds_make_samples_reproducible():
    data = GaussianSubspaceMixture(seed=3)
    torch.testing.assert_close(data.sample(5, seed=7)[0], data.sample(5, seed=7)[0])
    assert not torch.equal(data.sample(5, seed=7)[0], data.sample(5, seed=8)[0])


def test_smooth_basis_images():
    data = GaussianSubspaceMixture(shape=(1, 8, 8), basis="smooth", seed=0)
    x, _ = data.sample(3, seed=0)
    assert x.shape == (3, 1, 8, 8)
    assert data.tangent_space.dim == 4


def test_exact_score_matches_autograd_of_log_density():
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=2, shape=5, off_std=0.3, seed=0)
    x, y = data.sample(6, seed=0, dtype=torch.float64)
    x.requires_grad_()
    for sigma in (0.0, 0.4):
        lp = data.score_model.log_prob(x, sigma).sum()
        (g,) = torch.autograd.grad(lp, x)
        torch.testing.assert_close(data.score(x.detach(), sigma), g, rtol=1e-8, atol=1e-10)
        ll = data.score_model.class_log_likelihoods(x, sigma).gather(1, y[:, None]).sum()
        (gc,) = torch.autograd.grad(ll, x)
        torch.testing.assert_close(data.score(x.detach(), sigma, y), gc, rtol=1e-8, atol=1e-10)


def test_bayes_classifier_beats_chance_and_is_normalised():
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=4, shape=16, class_sep=4.0, seed=0)
    x, y = data.sample(600, seed=2)
    logits = data.bayes_classifier()(x)
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(600), atol=1e-5, rtol=0)
    assert float((logits.argmax(1) == y).float().mean()) > 0.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="`intrinsic_dim` to be < D"):
        GaussianSubspaceMixture(intrinsic_dim=64, shape=(1, 8, 8))
    with pytest.raises(ValueError, match="`off_std`"):
        GaussianSubspaceMixture(off_std=0.0)
    with pytest.raises(ValueError, match="`basis`"):
        GaussianSubspaceMixture(basis="wavy")
    with pytest.raises(ValueError, match="`num_classes` to be >= 2"):
        GaussianSubspaceMixture(num_classes=1)


def test_digits16_split_and_range():
    train, test = load_digits16("train"), load_digits16("test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.images.shape[1:] == (1, 16, 16)
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    # stratified: every class is present in both parts in similar proportion
    assert torch.bincount(test.labels).min() >= 30
    with pytest.raises(ValueError, match="`split`"):
        load_digits16("valid")


def test_digits16_lie_exactly_in_their_subspace():
    space = digits16_subspace()
    x = load_digits16("all").images.double()
    off = space.project_orthogonal(x, x)
    assert float(off.flatten(1).norm(dim=1).max()) < 1e-10
    # and the subspace is not everything: random images are mostly off it
    r = torch.randn(10, 1, 16, 16, dtype=torch.float64)
    assert float(space.project_orthogonal(r, r).norm() / r.norm()) > 0.8  # about sqrt(192/256)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_priors_set_the_label_frequencies_and_the_bayes_classifier(seed):
    priors = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    data = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=2, shape=6, class_sep=1.0, seed=seed, weights=[5, 3, 2])
    torch.testing.assert_close(data.weights, priors)
    n = 20000
    x, y = data.sample(n, seed=seed, dtype=torch.float64)
    freq = torch.bincount(y, minlength=3).double() / n
    assert bool(((freq - priors).abs() <= 4 * (priors * (1 - priors) / n).sqrt()).all()), freq
    # the class-conditional samples follow their class means whatever the priors
    coords = x @ data.basis.T
    for c in range(3):
        torch.testing.assert_close(coords[y == c].mean(0), data.means[c], atol=0.08, rtol=0)
    # the exact classifier uses the priors: it beats the same densities with uniform priors
    uniform = GaussianSubspaceMixture(num_classes=3, intrinsic_dim=2, shape=6, class_sep=1.0, seed=seed)
    acc = float((data.bayes_classifier()(x).argmax(1) == y).double().mean())
    acc_uniform = float((uniform.bayes_classifier()(x).argmax(1) == y).double().mean())
    assert acc > acc_uniform + 0.01, (acc, acc_uniform)
    expected = torch.log_softmax(data.score_model.class_log_likelihoods(x[:5]) + priors.log(), dim=1)
    torch.testing.assert_close(data.bayes_classifier()(x[:5]), expected, rtol=1e-12, atol=1e-12)
