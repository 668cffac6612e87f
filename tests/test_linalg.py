"""The kernel's linear algebra: dtype promotion, the rank threshold, projections, angles."""

import math
import warnings

import pytest
import torch

from captum_pags._kernel._linalg import (
    compute_dtype,
    default_rtol,
    orthonormal_rows,
    principal_angles,
    principal_rows,
    project_onto_rows,
)
from captum_pags.manifold import LinearSubspace, intrinsic_dimension

SEEDS = range(6)


def low_rank_jacobian(seed, n, d, rank, dtype):
    """(n, D) rows = B^T A^T computed in ``dtype``, exact rank ``rank`` < n (a rank-deficient decoder Jacobian)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.randn(rank, n, generator=gen, dtype=torch.float64).to(dtype)
    return (a @ b).T, orthonormal_rows(a.double().T)


def with_gain(seed, n, d, gain, dtype):
    """(n, D) rows with singular values 1, ..., 1, ``gain`` and known right singular vectors."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64)).Q
    w = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64)).Q.T
    s = torch.ones(n, dtype=torch.float64)
    s[-1] = gain
    return (u * s) @ w, w


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["gram", "svd"])
def test_rounding_noise_direction_is_dropped_for_every_seed(dtype, method):
    for seed in SEEDS:
        for d in (20, 300):
            rows, exact = low_rank_jacobian(seed, 5, d, 3, dtype)
            _, basis = principal_rows(rows, method=method)
            assert ((basis.norm(dim=-1) > 0.5).sum()) == 3, (seed, d)
            assert float(basis[3:].abs().max()) == 0.0
            # what is kept spans the exact column space of A (up to the input's own rounding)
            tol = 1e-3 if dtype == torch.float32 else 1e-10
            assert float(principal_angles(basis[:3].double(), exact)[-1]) < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["gram", "svd"])
def test_real_direction_with_gain_1e_3_is_kept_and_accurate(dtype, method):
    for seed in SEEDS:
        rows, w = with_gain(seed, 4, 200, 1e-3, dtype)
        s, basis = principal_rows(rows.to(dtype), method=method)
        assert int((basis.norm(dim=-1) > 0.5).sum()) == 4
        torch.testing.assert_close(s[-1].double(), torch.tensor(1e-3, dtype=torch.float64), rtol=1e-3, atol=0)
        # the weakest direction itself is found: its angle to the exact vector is small
        cos = float((basis[-1].double() @ w[-1]).abs())
        assert cos > 1 - (1e-3 if dtype == torch.float32 else 1e-9)


def test_default_threshold_sits_between_the_noise_floor_and_real_directions():
    for d in (20, 3072, 150528):
        for dtype in (torch.float32, torch.float64):
            rtol = default_rtol(dtype, 16, d, "gram")
            assert rtol > math.sqrt(torch.finfo(torch.float64).eps)  # above the float64 Gram floor
            assert rtol < 1e-3  # a real direction with gain 1e-3 survives
    # 16-bit floats use float32's tolerance, not their own epsilon
    assert default_rtol(torch.bfloat16, 4, 100) == default_rtol(torch.float32, 4, 100)
    assert default_rtol(torch.int64, 4, 100) == default_rtol(torch.float64, 4, 100)


def test_integer_rows_are_promoted_not_truncated():
    rows = torch.tensor([[3, 4, 0], [0, 0, 7]])
    out = orthonormal_rows(rows)
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(
        out.T @ out,
        torch.diag(torch.tensor([0.0, 0.0, 1.0]))
        + torch.tensor([[0.36, 0.48, 0.0], [0.48, 0.64, 0.0], [0.0, 0.0, 0.0]]),
    )
    big = torch.tensor([[200, 250, 0]], dtype=torch.uint8)  # would wrap if computed in uint8
    torch.testing.assert_close(orthonormal_rows(big).abs(), torch.tensor([[200.0, 250.0, 0.0]]) / math.hypot(200, 250))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_rows_give_no_nan(dtype):
    rows = torch.randn(3, 40).to(dtype)
    out = orthonormal_rows(rows)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    exact = orthonormal_rows(rows.double())
    assert float(principal_angles(out, exact)[-1]) < 0.05
    _, basis = principal_rows(torch.randn(2, 3, 40).to(dtype), method="gram")
    assert bool(torch.isfinite(basis).all()) and int((basis.norm(dim=-1) > 0.5).sum()) == 6


@pytest.mark.parametrize(("vec_dtype", "basis_dtype"), [(torch.float32, torch.float64), (torch.float64, torch.float32)])
def test_mixed_dtype_projection_is_correct_and_idempotent(vec_dtype, basis_dtype):
    for seed in SEEDS:
        gen = torch.Generator().manual_seed(seed)
        basis = orthonormal_rows(torch.randn(3, 30, generator=gen, dtype=torch.float64))
        v = torch.randn(2, 4, 30, generator=gen, dtype=torch.float64)
        expected = v @ (basis.T @ basis)
        out = project_onto_rows(basis.to(basis_dtype), v.to(vec_dtype))
        assert out.dtype == vec_dtype
        assert compute_dtype(vec_dtype, basis_dtype) == torch.float64  # the wider dtype does the math
        tol = 2e-6  # the float32 side's rounding, not more
        torch.testing.assert_close(out.double(), expected, rtol=0, atol=tol)
        again = project_onto_rows(basis.to(basis_dtype), out)
        torch.testing.assert_close(again, out, rtol=0, atol=10 * tol)


def test_integer_vectors_project_exactly():
    basis = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[[3, 7, 4]]], dtype=torch.uint8)
    out = project_onto_rows(basis, v)
    assert out.dtype == torch.get_default_dtype()
    torch.testing.assert_close(out, torch.tensor([[[0.0, 7.0, 0.0]]]))


def test_principal_angles_refuse_rows_that_are_not_orthonormal():
    a = torch.eye(4)[:2]
    with pytest.raises(ValueError, match=r"Expected `basis_b` to have orthonormal rows"):
        principal_angles(a, 2 * torch.eye(4)[:2])
    with pytest.raises(ValueError, match=r"Expected `basis_a` to have orthonormal rows"):
        principal_angles(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]) / math.sqrt(1.5), a)
    with pytest.raises(ValueError, match=r"`basis_a` to hold finite values"):
        principal_angles(torch.full((1, 4), math.nan), a)
    with pytest.raises(TypeError, match=r"`basis_a` to be a real tensor"):
        principal_angles(a.to(torch.complex64), a)
    # zero rows (dropped directions) are fine and count as orthogonal
    dropped = torch.stack([torch.eye(4)[0], torch.zeros(4)])
    torch.testing.assert_close(principal_angles(dropped, a), torch.tensor([0.0, math.pi / 2]))


def test_principal_angles_in_16_bit_match_float32():
    gen = torch.Generator().manual_seed(0)
    a = orthonormal_rows(torch.randn(3, 50, generator=gen))
    b = orthonormal_rows(a + 0.3 * torch.randn(3, 50, generator=gen))
    ref = principal_angles(a, b)
    for dtype in (torch.bfloat16, torch.float16):
        got = principal_angles(a.to(dtype), b.to(dtype))
        assert got.dtype == dtype and bool(torch.isfinite(got).all())
        torch.testing.assert_close(got.float(), ref, rtol=0, atol=0.03)


def test_intrinsic_dimension_refuses_a_spectrum_that_rises():
    with pytest.raises(ValueError, match=r"Expected `spectrum` to be in descending order.*index \(1,\)"):
        intrinsic_dimension(torch.tensor([1.0, 0.1, 0.5]))
    with pytest.raises(ValueError, match=r"Expected `spectrum` to be in descending order.*index \(1, 0\)"):
        intrinsic_dimension(torch.tensor([[1.0, 0.5, 0.1], [0.1, 1.0, 0.5]]))
    torch.testing.assert_close(intrinsic_dimension(torch.tensor([4, 3, 0])), torch.tensor(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_randomized_pca_equals_the_full_svd_on_data_with_a_gap(dtype):
    for seed in SEEDS:
        gen = torch.Generator().manual_seed(seed)
        d, k = 400, 5
        basis = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64)).Q.T
        scales = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
        data = (torch.randn(300, k, generator=gen, dtype=torch.float64) * scales) @ basis
        data = (data + 1e-3 * torch.randn(300, d, generator=gen, dtype=torch.float64) + 2.0).to(dtype)
        state = torch.random.get_rng_state()
        fast = LinearSubspace.from_data(data, k, method="randomized", chunk_size=64, seed=seed)
        assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
        full = LinearSubspace.from_data(data, k, method="full")
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        assert float(principal_angles(fast.rows, full.rows)[-1]) < tol
        torch.testing.assert_close(fast.explained_variance, full.explained_variance, rtol=tol, atol=0)
        # explained variance by value: the per-direction variance of the centred data
        centred = data.double() - data.double().mean(0)
        by_hand = ((centred @ full.rows.T) ** 2).sum(0) / (data.shape[0] - 1)
        torch.testing.assert_close(full.explained_variance.double(), by_hand, rtol=1e-5, atol=0)
        torch.testing.assert_close(full.mean.double(), data.double().mean(0), rtol=1e-6, atol=1e-6)


def test_auto_method_picks_randomized_only_when_k_is_small():
    data = torch.randn(500, 300, dtype=torch.float64)
    gen_state = torch.random.get_rng_state()
    LinearSubspace.from_data(data, 3)  # randomized (4 * 13 < 300), seeded locally
    assert torch.equal(torch.random.get_rng_state(), gen_state)
    a = LinearSubspace.from_data(data, 3, seed=1)
    b = LinearSubspace.from_data(data, 3, seed=1)
    torch.testing.assert_close(a.rows, b.rows, rtol=0, atol=0)


def test_zero_variance_directions_are_dropped_with_a_warning():
    plane = torch.eye(6, dtype=torch.float64)[:2]
    data = torch.randn(40, 2, dtype=torch.float64) @ plane
    with pytest.warns(RuntimeWarning, match=r"only 2 of the dim=4 principal directions"):
        space = LinearSubspace.from_data(data, 4, method="full")
    assert space.dim == 2 and space.explained_variance.shape == (2,)
    assert float(principal_angles(space.rows, plane)[-1]) < 1e-12
    with pytest.raises(ValueError, match="Expected `data` to vary"):
        LinearSubspace.from_data(torch.ones(5, 3), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearSubspace.from_data(data, 2, method="full")


def test_integer_data_pca_is_not_truncated():
    data = torch.tensor([[0, 0], [100, 200], [200, 400], [300, 600]], dtype=torch.int64)
    space = LinearSubspace.from_data(data, 1)
    assert space.mean.dtype == torch.get_default_dtype()
    torch.testing.assert_close(space.mean, torch.tensor([150.0, 300.0]))
    torch.testing.assert_close(space.rows.abs(), torch.tensor([[1.0, 2.0]], dtype=torch.float64) / math.sqrt(5))
    torch.testing.assert_close(space.explained_variance, torch.tensor([250000.0 / 3]))


def test_flat_basis_accepted_for_image_inputs():
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(3, 2 * 4 * 4, generator=gen, dtype=torch.float64)
    flat_space = LinearSubspace(raw)  # what a PCA of flattened images gives: (k, D)
    image_space = LinearSubspace(raw.reshape(3, 2, 4, 4))
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    v = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    on = flat_space.project(x, v)
    assert on.shape == v.shape
    torch.testing.assert_close(on, image_space.project(x, v), rtol=0, atol=1e-12)
    assert flat_space.basis(x).shape == (5, 3, 32)
    with pytest.raises(ValueError, match=r"`inputs` to have per-example shape \(32,\)"):
        flat_space.basis(torch.zeros(5, 2, 4, 3))


def test_pca_streams_over_batches_and_equals_the_tensor_fit():
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(5)
    basis = torch.linalg.qr(torch.randn(200, 4, generator=gen, dtype=torch.float64)).Q.T
    data = (torch.randn(300, 4, generator=gen, dtype=torch.float64) * torch.tensor([4.0, 3, 2, 1])) @ basis
    data = (data + 1e-3 * torch.randn(300, 200, generator=gen, dtype=torch.float64)).reshape(300, 2, 10, 10)
    ref = LinearSubspace.from_data(data, 4, method="randomized", seed=3)
    labels = torch.zeros(300, dtype=torch.long)
    loader = DataLoader(TensorDataset(data, labels), batch_size=64)  # (x, y) batches: x is taken
    for source in (loader, list(data.split(50))):
        fitted = LinearSubspace.from_data(source, 4, method="randomized", seed=3)
        assert fitted.input_shape == (2, 10, 10)
        torch.testing.assert_close(fitted.rows, ref.rows, rtol=0, atol=1e-10)
        torch.testing.assert_close(fitted.explained_variance, ref.explained_variance, rtol=1e-10, atol=0)
        torch.testing.assert_close(fitted.mean, ref.mean, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="Expected `data` to give the same 300 examples on every pass"):
        LinearSubspace.from_data(iter(data.split(50)), 4, method="randomized")
    with pytest.raises(ValueError, match="Expected every batch of `data` to have per-example shape"):
        LinearSubspace.from_data([data[:10], data[:10, :1]], 2)
    with pytest.raises(ValueError, match="Expected `data` to hold at least one example"):
        LinearSubspace.from_data([], 2)
    with pytest.raises(TypeError, match="Expected `data` to be a torch.Tensor or an iterable"):
        LinearSubspace.from_data(3, 2)


# ---------------------------------------------------------------- closing mutation-test survivors


@pytest.mark.parametrize("gain", [1e-3, 1e-4])
def test_gram_route_rows_are_orthonormal_to_float64_rounding(gain):
    # u_i^T V / s_i alone loses orthogonality like eps * cond^2; the Cholesky-QR step must repair it
    for seed in SEEDS:
        rows, w = with_gain(seed, 6, 300, gain, torch.float64)
        _, basis = principal_rows(rows, method="gram")
        assert basis.dtype == torch.float64
        err = float((basis @ basis.T - torch.eye(6, dtype=torch.float64)).abs().max())
        assert err < 1e-12, (seed, err)
        torch.testing.assert_close(basis.T @ basis, w.T @ w, rtol=0, atol=1e-10)


def test_projection_computes_in_the_wider_dtype_of_basis_and_vectors():
    for seed in SEEDS:
        gen = torch.Generator().manual_seed(seed)
        b64 = orthonormal_rows(torch.randn(3, 30, generator=gen, dtype=torch.float64))
        v32 = torch.randn(2, 4, 30, generator=gen).float()
        # a float64 basis with float32 vectors: exactly the float64 product, rounded once at the end
        expected = ((v32.double() @ b64.T) @ b64).float()
        assert torch.equal(project_onto_rows(b64, v32), expected), seed
        # a float32 basis with float64 vectors: the float64 vectors are not rounded to float32
        b32 = b64.float()
        v64 = torch.randn(2, 4, 30, generator=gen, dtype=torch.float64)
        expected = (v64 @ b32.double().T) @ b32.double()
        torch.testing.assert_close(project_onto_rows(b32, v64), expected, rtol=1e-14, atol=1e-14)


def test_orthonormality_tolerance_depends_on_the_dtype():
    a = torch.eye(5)[:2]
    off = torch.eye(5)[:2].clone()
    off[0, 1] = 0.01  # |B B^T - I| about 1e-2: above float32's 1e-3, below 16-bit's 5e-2
    off = off / off.norm(dim=1, keepdim=True)
    with pytest.raises(ValueError, match=r"`basis_b` to have orthonormal rows .*tolerance 0\.001"):
        principal_angles(a, off)
    assert bool(torch.isfinite(principal_angles(a.bfloat16(), off.bfloat16())).all())
    worse = torch.eye(5)[:2].clone()
    worse[0, 1] = 0.3  # |B B^T - I| about 0.29: refused in 16-bit too
    worse = worse / worse.norm(dim=1, keepdim=True)
    for dtype in (torch.bfloat16, torch.float16):
        with pytest.raises(ValueError, match=r"`basis_b` to have orthonormal rows .*tolerance 0\.05"):
            principal_angles(a.to(dtype), worse.to(dtype))


def test_a_short_row_is_refused_even_where_its_gram_entry_is_tiny():
    a = torch.eye(4)[:2]
    short = torch.stack([torch.eye(4)[0], 0.01 * torch.eye(4)[1]])  # |row|^2 = 1e-4 < tol, |row| > tol
    with pytest.raises(ValueError, match=r"`basis_b` to have orthonormal rows"):
        principal_angles(a, short)


def test_principal_angle_errors_name_the_argument_and_the_sizes():
    a = torch.eye(4)[:2]
    with pytest.raises(TypeError, match=r"Expected `basis_b` to be a torch.Tensor"):
        principal_angles(a, [[1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"same number of features D but got 4 and 3"):
        principal_angles(a, torch.eye(3)[:1])


@pytest.mark.parametrize("order", ["a32_b64", "a64_b32"])
def test_principal_angles_compute_in_the_wider_dtype(order):
    for seed in SEEDS:
        gen = torch.Generator().manual_seed(seed)
        a = orthonormal_rows(torch.randn(3, 40, generator=gen, dtype=torch.float64))
        b = orthonormal_rows(a + 0.5 * torch.randn(3, 40, generator=gen, dtype=torch.float64))
        a32 = a.float()  # orthonormal to float32 rounding; exactly representable in float64
        if order == "a32_b64":
            got, ref = principal_angles(a32, b), principal_angles(a32.double(), b)
        else:
            got, ref = principal_angles(b, a32), principal_angles(b, a32.double())
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


def test_a_dropped_row_of_the_smaller_set_is_orthogonal_even_when_the_rest_coincide():
    a = torch.eye(4)[:2]
    dropped = torch.stack([torch.eye(4)[0], torch.zeros(4)])  # as basis_b: e0 coincides, the zero row is dropped
    torch.testing.assert_close(principal_angles(a, dropped), torch.tensor([0.0, math.pi / 2]), rtol=0, atol=1e-7)
    three = torch.eye(5)[:3]
    two_dropped = torch.stack([torch.eye(5)[1], torch.zeros(5), torch.zeros(5)])
    torch.testing.assert_close(
        principal_angles(three, two_dropped), torch.tensor([0.0, math.pi / 2, math.pi / 2]), rtol=0, atol=1e-7
    )


def test_feature_mismatch_message_gives_the_feature_sizes_of_batched_bases():
    a = torch.eye(4)[:2].expand(3, 2, 4)
    with pytest.raises(ValueError, match=r"same number of features D but got 4 and 5"):
        principal_angles(a, torch.eye(5)[:1].expand(3, 1, 5))
