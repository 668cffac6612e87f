"""shapes32: the renderer, the splits and the exact curved tangent space."""

import math

import pytest
import torch

from captum_pags.datasets import (
    SHAPES32_CLASSES,
    SHAPES32_FACTOR_RANGES,
    SHAPES32_FACTORS,
    SHAPES32_SIZES,
    load_shapes32,
    render_shapes32,
)
from captum_pags.datasets.shapes32_tangent import (
    Shapes32Tangent,
    compare_tangents,
    shapes32_jacobian,
    shapes32_tangent,
)
from captum_pags.manifold import LinearSubspace, principal_angles

F = len(SHAPES32_FACTORS)


def _random_factors(n, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    low, high = SHAPES32_FACTOR_RANGES.unbind(1)
    factors = low + (high - low) * torch.rand(n, F, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, len(SHAPES32_CLASSES), (n,), generator=gen)
    return factors.to(dtype), labels


@pytest.fixture(scope="module")
def test_split():
    return load_shapes32("test")


def test_splits_are_deterministic_balanced_and_reproduced_by_the_renderer(test_split):
    again = load_shapes32("test")
    assert torch.equal(again.images, test_split.images) and torch.equal(again.factors, test_split.factors)
    assert test_split.images.shape == (SHAPES32_SIZES["test"], 3, 32, 32)
    assert test_split.images.dtype == torch.float32 and test_split.labels.dtype == torch.int64
    assert torch.bincount(test_split.labels).tolist() == [SHAPES32_SIZES["test"] // 5] * 5
    low, high = SHAPES32_FACTOR_RANGES.unbind(1)
    assert bool(((test_split.factors >= low) & (test_split.factors <= high)).all())
    assert 0.0 <= float(test_split.images.min()) and float(test_split.images.max()) <= 1.0
    # the stored images are the renderer's, whatever the batch they are rendered in
    idx = torch.tensor([0, 17, 333, 999])
    rendered = render_shapes32(test_split.factors[idx], test_split.labels[idx]).float()
    torch.testing.assert_close(rendered, test_split.images[idx], rtol=0, atol=1e-7)
    # train and test are different draws
    train = load_shapes32("train")
    assert len(train) == SHAPES32_SIZES["train"] and not torch.equal(train.factors[:5], test_split.factors[:5])
    # a returned split is a copy: changing it does not change the next load
    again.images.zero_()
    assert float(load_shapes32("test").images.abs().sum()) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shapes_stay_inside_the_image_and_classes_differ(seed):
    factors, labels = _random_factors(200, seed)
    images = render_shapes32(factors, labels)
    # the border pixels are background up to the soft edge's tail (a square's corner can come
    # within 1.9 px of a border pixel's centre: sigmoid(-1.9 / 0.5) = 0.022 of the contrast)
    grey = factors[:, 6].view(-1, 1, 1)
    border = torch.cat([images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]], dim=-1)
    assert float((border - grey).abs().max()) < 0.025
    inner = images[:, :, 3:-3, 3:-3]
    assert float((images - grey.unsqueeze(1)).abs().sum()) == pytest.approx(
        float((inner - grey.unsqueeze(1)).abs().sum()), rel=0.01
    )
    # the same factors under each label give clearly different images (shape kinds)
    f = factors[:10]
    per_class = torch.stack([render_shapes32(f, torch.full((10,), c)) for c in range(5)], 1)
    for a in range(5):
        for b in range(a + 1, 5):
            assert float((per_class[:, a] - per_class[:, b]).abs().amax((1, 2, 3)).min()) > 0.1


def test_render_is_smooth_at_known_values_and_refuses_bad_input():
    # square of size 7 at the centre, red at full intensity, grey 0.1: centre red, corner grey
    f = torch.tensor([[16.0, 16.0, 7.0, 0.0, 0.0, 1.0, 0.1]], dtype=torch.float64)
    img = render_shapes32(f, torch.tensor([1]))
    torch.testing.assert_close(
        img[0, :, 16, 16], torch.tensor([1.0, 0.25, 0.25], dtype=torch.float64), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(img[0, :, 0, 0], torch.full((3,), 0.1, dtype=torch.float64), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match=r"Expected `factors` to have shape \(N, 7\)"):
        render_shapes32(torch.zeros(2, 6), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="Expected `factors` to be a floating tensor"):
        render_shapes32(torch.zeros(2, 7, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="Expected `labels` to be an integer tensor"):
        render_shapes32(f.repeat(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match=r"Expected `labels` in 0..4 but got values in 0..5"):
        render_shapes32(f.repeat(2, 1), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"Expected `labels` to have shape \(1,\)"):
        render_shapes32(f, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="Expected `factors` to be finite"):
        render_shapes32(torch.full((1, 7), math.nan), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"Expected the size `factors\[:, 2\]` to be > 0 but got 0.0"):
        render_shapes32(f * torch.tensor([1, 1, 0, 1, 1, 1, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="Expected `split` to be one of"):
        load_shapes32("validation")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jacobian_equals_central_differences_in_float64(seed):
    factors, labels = _random_factors(30, seed)
    jac = shapes32_jacobian(factors, labels, chunk_size=7)  # chunking must not matter
    h = 1e-5
    eye = torch.eye(F, dtype=torch.float64)
    fd = torch.stack(
        [
            (render_shapes32(factors + h * eye[i], labels) - render_shapes32(factors - h * eye[i], labels)) / (2 * h)
            for i in range(F)
        ],
        dim=1,
    )
    rel = (fd - jac).flatten(2).norm(dim=2) / jac.flatten(2).norm(dim=2)
    assert float(rel.max()) < 1e-6
    # the spans agree: principal angles ~ 0 between the exact basis and the finite-difference one
    space = Shapes32Tangent(factors, labels)
    fd_basis = torch.linalg.svd(fd.flatten(2), full_matrices=False)[2]
    angles = principal_angles(space.basis_at(factors, labels), fd_basis)
    assert angles.shape == (30, F) and float(angles.max()) < 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tangent_space_has_exactly_the_factor_count_as_dimension(seed):
    factors, labels = _random_factors(100, seed)
    jac = shapes32_jacobian(factors, labels).flatten(2)
    s = torch.linalg.svdvals(jac)
    # rank F: the smallest singular value is far above float64 noise, and there is no (F+1)-th
    assert float((s[:, -1] / s[:, 0]).min()) > 1e-3
    assert jac.shape[1] == F
    # the corners of the factor box too
    low, high = SHAPES32_FACTOR_RANGES.unbind(1)
    corners = torch.stack([low, high, torch.where(torch.arange(F) % 2 == 0, low, high)])
    s = torch.linalg.svdvals(shapes32_jacobian(corners.repeat(5, 1), torch.arange(5).repeat_interleave(3)).flatten(2))
    assert float((s[:, -1] / s[:, 0]).min()) > 1e-3


def test_the_manifold_is_curved_so_no_single_plane_holds_it(test_split):
    # tangent spaces at images of the same class differ: the manifold is not a linear subspace
    space = shapes32_tangent(test_split)
    idx = torch.nonzero(test_split.labels == 0).flatten()[:6]
    basis = space.basis(test_split.images[idx]).double()
    angles = torch.rad2deg(principal_angles(basis[:-1], basis[1:]))
    assert float(angles[:, -1].min()) > 30.0


def test_exact_tangent_looks_up_dataset_images_and_refuses_others(test_split):
    space = shapes32_tangent(test_split)
    x = test_split.images[:8]
    basis = space.basis(x)
    assert basis.shape == (8, F, 3072) and basis.dtype == torch.float32
    torch.testing.assert_close(basis @ basis.transpose(1, 2), torch.eye(F).expand(8, F, F), atol=1e-4, rtol=0)
    expected = space.basis_at(test_split.factors[:8], test_split.labels[:8])
    torch.testing.assert_close(basis.double(), expected, atol=1e-6, rtol=0)
    # the lookup survives a dtype round trip and a permutation; float64 inputs get float64 bases
    perm = torch.tensor([3, 1, 7, 0])
    assert space.lookup(x[perm].double()).tolist() == perm.tolist()
    assert space.basis(x[:2].double()).dtype == torch.float64
    # a rounding-level change is still the same point (nearest-image fallback), a visible one is not
    assert space.lookup(x[perm] + 5e-7).tolist() == perm.tolist()
    assert space.lookup(x[perm] + 1e-5).tolist() == [-1] * 4
    # projections: the tangent part of a Jacobian column is itself
    jac = shapes32_jacobian(test_split.factors[:8], test_split.labels[:8]).float()
    torch.testing.assert_close(space.project(x, jac[:, 2]), jac[:, 2], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="2 of 3 match none"):
        space.basis(torch.cat([x[:1], x[1:3] + 0.01]))
    with pytest.raises(ValueError, match=r"per-example shape \(3, 32, 32\)"):
        space.basis(torch.zeros(2, 1, 16, 16))


def test_basis_at_refuses_a_degenerate_point():
    # at zero intensity the hue no longer changes the image: the Jacobian loses a rank
    f = torch.tensor([[16.0, 16.0, 7.0, 0.0, 0.0, 0.0, 0.1]], dtype=torch.float64)
    space = Shapes32Tangent(f, torch.tensor([0]))
    with pytest.raises(ValueError, match="Expected `factors` where the renderer's Jacobian has full rank 7"):
        space.basis_at(f, torch.tensor([0]))


def test_compare_tangents_on_known_angles_and_streams_in_batches():
    exact = LinearSubspace(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    estimators = {
        "same": LinearSubspace(torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])),
        "tilted": LinearSubspace(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, c, s, 0.0]])),
        "orthogonal": LinearSubspace(torch.tensor([[0.0, 0.0, 1.0, 0.0]])),
    }
    points = torch.randn(7, 4)
    out = compare_tangents(estimators, exact, points, batch_size=3)
    assert out["same"]["max_max"] < 1e-5 and out["same"]["dim"] == 2
    assert out["tilted"]["mean"] == pytest.approx(15.0, abs=1e-4)
    assert out["tilted"]["max_mean"] == pytest.approx(30.0, abs=1e-4)
    assert out["orthogonal"]["mean"] == pytest.approx(90.0, abs=1e-4) and out["orthogonal"]["dim"] == 1
    whole = compare_tangents(estimators, exact, points, batch_size=100)
    for name, summary in out.items():
        assert whole[name] == pytest.approx(summary)
    with pytest.raises(TypeError, match=r"Expected `estimators\['x'\]` to be a TangentSpace"):
        compare_tangents({"x": object()}, exact, points)
