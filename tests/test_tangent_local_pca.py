import math
import warnings

import numpy as np
import pytest
import torch
from blob_manifold import BlobGenerator, sample_latents

from captum_pags.manifold import LocalPCATangent, orthonormal_rows, principal_angles


def brute_force_local_pca(reference, queries, dim, n):
    """Slow float64 reference: one query at a time, NumPy distances and SVD."""
    ref = reference.reshape(len(reference), -1).double().numpy()
    out = []
    for q in queries.reshape(len(queries), -1).double().numpy():
        nearest = np.argsort(((ref - q) ** 2).sum(1), kind="stable")[:n]
        hood = ref[nearest]
        _, _, vh = np.linalg.svd(hood - hood.mean(0), full_matrices=False)
        out.append(vh[:dim])
    return torch.from_numpy(np.stack(out))


def projectors(basis):
    return basis.transpose(-1, -2) @ basis


def test_affine_plane_is_recovered_exactly():
    gen = torch.Generator().manual_seed(0)
    plane = orthonormal_rows(torch.randn(2, 30, generator=gen, dtype=torch.float64))
    offset = torch.randn(30, generator=gen, dtype=torch.float64)
    reference = torch.randn(500, 2, generator=gen, dtype=torch.float64) @ plane + offset
    queries = torch.randn(8, 2, generator=gen, dtype=torch.float64) @ plane + offset
    basis = LocalPCATangent(reference, dim=2, n_neighbors=6).basis(queries)
    assert basis.shape == (8, 2, 30)
    assert float(principal_angles(basis, plane)[:, -1].max()) < 1e-10


def test_matches_brute_force_float64_for_any_chunking():
    gen = torch.Generator().manual_seed(1)
    reference = torch.randn(300, 2, 3, 3, generator=gen, dtype=torch.float64)
    queries = torch.randn(11, 2, 3, 3, generator=gen, dtype=torch.float64)
    expected = projectors(brute_force_local_pca(reference, queries, dim=3, n=9))
    for chunk_size, batch_size in [(None, None), (7, 3), (64, 1), (299, 5)]:
        space = LocalPCATangent(reference, dim=3, n_neighbors=9, chunk_size=chunk_size, batch_size=batch_size)
        basis = space.basis(queries)
        torch.testing.assert_close(projectors(basis), expected, rtol=0, atol=1e-10)
        assert space.last_neighbors.shape == (11, 9) and space.last_singular_values.shape == (11, 3)
    ref_basis = LocalPCATangent(reference, 3, 9, chunk_size=None, batch_size=None).basis(queries)
    torch.testing.assert_close(LocalPCATangent(reference, 3, 9, chunk_size=13, batch_size=4).basis(queries), ref_basis)


def test_curved_blob_manifold_within_bound():
    gen = BlobGenerator()
    reference = gen(sample_latents(20000, seed=0))
    z = sample_latents(30, seed=1, margin=0.2)
    basis = LocalPCATangent(reference.float(), dim=3, n_neighbors=40).basis(gen(z).float())
    angles = torch.rad2deg(principal_angles(basis.double(), orthonormal_rows(gen.exact_jacobian(z)))[:, -1])
    # measured: mean 1.37, max 1.91 degrees
    assert float(angles.mean()) < 2.5
    assert float(angles.max()) < 4.0


def test_tuple_inputs_equal_concatenated_features():
    a, b = torch.randn(200, 4), torch.randn(200, 2, 3)
    qa, qb = torch.randn(5, 4), torch.randn(5, 2, 3)
    tuple_basis = LocalPCATangent((a, b), dim=2, n_neighbors=8).basis((qa, qb))
    flat_basis = LocalPCATangent(torch.cat([a, b.flatten(1)], 1), dim=2, n_neighbors=8).basis(
        torch.cat([qa, qb.flatten(1)], 1)
    )
    torch.testing.assert_close(tuple_basis, flat_basis)


def test_degenerate_neighbourhoods_give_zero_rows():
    t = torch.linspace(0, 1, 50, dtype=torch.float64).unsqueeze(1)
    line = t * torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64) / 3
    space = LocalPCATangent(line, dim=2, n_neighbors=5)
    with pytest.warns(RuntimeWarning, match="neighbourhoods of 2 of 2 inputs span fewer than dim=2"):
        basis = space.basis(line[10:12])
    assert space.last_rank.tolist() == [1, 1]
    torch.testing.assert_close(basis[:, 0].abs(), torch.tensor([[1.0, 2.0, 2.0]] * 2, dtype=torch.float64) / 3)
    assert float(basis[:, 1].abs().max()) == 0.0
    assert math.isclose(float(principal_angles(basis, basis[:, :1])[0, -1]), 0.0, abs_tol=1e-12)


def test_results_follow_input_dtype_and_reference_is_copied():
    reference = torch.randn(50, 6)
    space = LocalPCATangent(reference, dim=1, n_neighbors=4)
    before = space.basis(torch.randn(2, 6, generator=torch.Generator().manual_seed(3)))
    reference.zero_()
    after = space.basis(torch.randn(2, 6, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(after, before)
    assert space.basis(torch.randn(2, 6, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": 6}, ValueError, r"Expected `dim` to be < D = 6"),
        ({"dim": 0}, ValueError, r"Expected `dim` to be >= 1 but got 0"),
        ({"dim": 3, "n_neighbors": 3}, ValueError, r"Expected `n_neighbors` to be > `dim` = 3"),
        ({"n_neighbors": 11}, ValueError, r"Expected `n_neighbors` to be <= the number of reference points M = 10"),
        ({"reference": torch.full((10, 6), float("nan"))}, ValueError, "Expected `reference` to hold finite values"),
        ({"reference": [[0.0] * 6] * 10}, TypeError, "Expected `reference` to be a torch.Tensor"),
        ({"chunk_size": 0}, ValueError, "Expected `chunk_size` to be >= 1"),
        ({"dim": 1.5}, TypeError, "Expected `dim` to be an int"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"reference": torch.randn(10, 6), "dim": 2, "n_neighbors": 4, **kwargs}
    with pytest.raises(error, match=match):
        LocalPCATangent(**args)


def test_bad_queries():
    space = LocalPCATangent(torch.randn(10, 1, 2, 3), dim=2, n_neighbors=4)
    with pytest.raises(ValueError, match=r"Expected `inputs` to have per-example shape \(1, 2, 3\)"):
        space.basis(torch.randn(2, 6))
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        space.basis(torch.full((2, 1, 2, 3), float("inf")))


def test_duplicate_neighbours_give_an_all_zero_basis_and_warn_once():
    reference = torch.cat([torch.zeros(6, 4), torch.randn(30, 4) + 10.0])  # six copies of one point
    space = LocalPCATangent(reference, dim=2, n_neighbors=5)
    with pytest.warns(RuntimeWarning, match="1 of them have an all-zero basis"):
        basis = space.basis(torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 10.0, 10.0]]))
    assert float(basis[0].abs().max()) == 0.0  # not arbitrary directions
    assert space.last_rank.tolist() == [0, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.basis(torch.zeros(1, 4))  # once per estimator


def test_block_size_bounds_the_neighbourhood_buffer_and_not_the_result():
    reference = torch.randn(300, 12, dtype=torch.float64)
    queries = torch.randn(20, 12, dtype=torch.float64)
    ref = LocalPCATangent(reference, dim=3, n_neighbors=10, batch_size=20).basis(queries)
    small = LocalPCATangent(reference, dim=3, n_neighbors=10, chunk_size=7)
    small.max_block_elements = 10 * 12 * 3  # three queries per block
    assert small._batch_size(12) == 3
    torch.testing.assert_close(small.basis(queries), ref, rtol=0, atol=1e-12)


def test_flat_reference_accepts_image_queries_and_integer_queries_are_promoted():
    reference = torch.randn(100, 2 * 3 * 3, dtype=torch.float64)
    space = LocalPCATangent(reference, dim=2, n_neighbors=6)
    q = torch.randint(0, 3, (4, 2, 3, 3))
    basis = space.basis(q)
    assert basis.dtype == torch.get_default_dtype()
    expected = space.basis(q.reshape(4, -1).to(torch.get_default_dtype()))
    torch.testing.assert_close(basis, expected)


def test_the_defaults_are_the_documented_ones():
    space = LocalPCATangent(torch.randn(20, 5), dim=1, n_neighbors=4)
    assert (space.chunk_size, space.rtol) == (4096, None)


def test_an_explicit_rtol_drops_a_weak_direction_that_the_default_keeps():
    # neighbourhoods on a plane with a second direction of gain 1e-3: the default threshold (a
    # noise floor near 1e-7) keeps it, rtol=1e-2 drops it and leaves an all-zero row
    gen = torch.Generator().manual_seed(5)
    coords = torch.randn(200, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 1e-3], dtype=torch.float64)
    reference = torch.cat([coords, torch.zeros(200, 4, dtype=torch.float64)], 1)
    query = reference[:3]
    kept = LocalPCATangent(reference, dim=2, n_neighbors=40).basis(query)
    dropped = LocalPCATangent(reference, dim=2, n_neighbors=40, rtol=1e-2).basis(query)
    assert bool((kept.norm(dim=-1) > 0.99).all())
    assert bool((dropped[:, 0].norm(dim=-1) > 0.99).all()) and float(dropped[:, 1].abs().max()) == 0.0


def test_a_float32_reference_with_float64_queries_is_computed_in_float64():
    gen = torch.Generator().manual_seed(6)
    reference = torch.randn(120, 8, generator=gen).double().float()  # values exact in float32
    queries = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    mixed = LocalPCATangent(reference, dim=3, n_neighbors=10).basis(queries)
    wide = LocalPCATangent(reference.double(), dim=3, n_neighbors=10).basis(queries)
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(projectors(mixed), projectors(wide), rtol=0, atol=1e-12)


def test_a_float64_reference_with_float32_queries_is_computed_in_float64():
    # points far from the origin: float32 would round the neighbourhoods' spread of about 1 at
    # 1e4 to 1e-3 and scramble the basis; float64 math returns it rounded once, to float32
    gen = torch.Generator().manual_seed(7)
    reference = torch.randn(120, 8, generator=gen, dtype=torch.float64) + 1e4
    queries = reference[:4].float()
    space = LocalPCATangent(reference, dim=3, n_neighbors=10)
    mixed = space.basis(queries)
    wide = space.basis(queries.double())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(projectors(mixed.double()), projectors(wide), rtol=0, atol=1e-6)


def test_an_integer_reference_is_kept_as_default_float_and_the_diagnostics_start_empty():
    space = LocalPCATangent(torch.randint(0, 5, (50, 4)), dim=1, n_neighbors=5)
    assert space.reference.dtype == torch.get_default_dtype()
    assert (space.last_singular_values, space.last_neighbors, space.last_rank) == (None, None, None)
