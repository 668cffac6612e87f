import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_pags.manifold import LinearSubspace, orthonormal_rows, principal_angles


def test_basis_is_orthonormal_and_batched():
    space = LinearSubspace(torch.randn(3, 10))
    b = space.basis(torch.zeros(5, 10))
    assert b.shape == (5, 3, 10)
    torch.testing.assert_close(b[0] @ b[0].T, torch.eye(3), atol=1e-6, rtol=0)


def test_projection_matches_explicit_float64_matrix():
    raw = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    space = LinearSubspace(raw)
    q, _ = torch.linalg.qr(raw.reshape(4, -1).T)
    p = q @ q.T
    v = torch.randn(7, 2, 3, 3, dtype=torch.float64)
    expected = (v.reshape(7, -1) @ p).reshape(v.shape)
    torch.testing.assert_close(space.project(torch.zeros_like(v), v), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(space.projection_matrix(), p, rtol=1e-10, atol=1e-12)


def test_on_plus_off_is_identity_and_projection_idempotent():
    space = LinearSubspace(torch.randn(3, 12))
    x, v = torch.randn(4, 12), torch.randn(4, 12)
    on, off = space.components(x, v)
    torch.testing.assert_close(on + off, v)
    torch.testing.assert_close(space.project(x, on), on, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(space.project(x, off), torch.zeros_like(off), atol=1e-5, rtol=0)


def test_multiple_vectors_per_example_and_tuple_inputs():
    space = LinearSubspace(torch.randn(2, 5), input_shape=((2,), (3,)))
    x = (torch.zeros(4, 2), torch.zeros(4, 3))
    v = (torch.randn(4, 6, 2), torch.randn(4, 6, 3))
    on = space.project(x, v)
    assert isinstance(on, tuple) and on[0].shape == (4, 6, 2) and on[1].shape == (4, 6, 3)
    flat = torch.cat([v[0], v[1]], -1)
    expected = flat @ space.projection_matrix().float()
    torch.testing.assert_close(torch.cat(on, -1), expected, atol=1e-5, rtol=1e-5)


def test_full_dimensional_subspace_gives_back_vectors():
    space = LinearSubspace(torch.randn(6, 6))
    v = torch.randn(3, 6)
    torch.testing.assert_close(space.project(torch.zeros(3, 6), v), v, atol=1e-5, rtol=1e-5)


def test_from_data_recovers_a_known_plane():
    basis = torch.linalg.qr(torch.randn(20, 2, dtype=torch.float64))[0].T
    data = torch.randn(200, 2, dtype=torch.float64) @ basis + 3.0
    fitted = LinearSubspace.from_data(data, 2)
    torch.testing.assert_close(fitted.projection_matrix(), basis.T @ basis, atol=1e-10, rtol=0)
    torch.testing.assert_close(fitted.mean, data.mean(0))
    # by value: the sample variance of the data along each fitted direction, largest first
    centred = data - data.mean(0)
    expected = ((centred @ fitted.rows.T) ** 2).sum(0) / (len(data) - 1)
    torch.testing.assert_close(fitted.explained_variance, expected, rtol=1e-12, atol=0)
    assert bool(fitted.explained_variance[0] >= fitted.explained_variance[1])


def test_device_and_dtype_follow_inputs():
    space = LinearSubspace(torch.randn(2, 4))
    out = space.project(torch.zeros(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    assert out.dtype == torch.float64


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 6), extra=st.integers(0, 6), n=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_projection_properties(k, extra, n, seed):
    gen = torch.Generator().manual_seed(seed)
    d = k + extra
    space = LinearSubspace(torch.randn(k, d, generator=gen, dtype=torch.float64))
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = torch.zeros(n, d, dtype=torch.float64)
    on, off = space.components(x, v)
    torch.testing.assert_close(on + off, v)
    torch.testing.assert_close(space.project(x, on), on, atol=1e-9, rtol=1e-9)
    assert float((on * off).sum(-1).abs().max()) < 1e-9  # orthogonal parts
    assert bool((on.norm(dim=-1) <= v.norm(dim=-1) + 1e-9).all())  # projections never lengthen


def test_orthonormal_rows_drop_keeps_shape():
    v = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    out = orthonormal_rows(v, drop=True)
    assert out.shape == (2, 3)
    assert int((out.norm(dim=1) > 0.5).sum()) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"basis": torch.tensor([[1.0, 0.0], [2.0, 0.0]])}, ValueError, "`basis` to have full rank 2"),
        ({"basis": torch.randn(2, 4), "input_shape": (5,)}, ValueError, "`basis` to have D=5"),
        ({"basis": torch.tensor([[float("nan"), 1.0]])}, ValueError, "`basis` to hold finite"),
        ({"basis": [[1.0, 0.0]]}, TypeError, "`basis` to be a torch.Tensor"),
        ({"basis": torch.randn(5, 3)}, ValueError, "at most D=3 rows"),
    ],
)
def test_bad_basis(kwargs, error, match):
    with pytest.raises(error, match=match):
        LinearSubspace(**kwargs)


def test_bad_inputs_name_the_argument():
    space = LinearSubspace(torch.randn(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"`inputs` to have per-example shape \(1, 4, 4\)"):
        space.basis(torch.zeros(3, 1, 5, 5))
    with pytest.raises(ValueError, match="empty batch"):
        space.basis(torch.zeros(0, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        space.basis(torch.full((1, 1, 4, 4), float("inf")))
    with pytest.raises(ValueError, match="`vectors` to have shape"):
        space.project(torch.zeros(3, 1, 4, 4), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="`dim` to be <= min"):
        LinearSubspace.from_data(torch.randn(3, 4), 5)


def test_a_bad_batch_of_streamed_data_is_refused_naming_data():
    good = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bad = good.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"Expected `data` to hold finite values"):
        LinearSubspace.from_data([good, bad], 2)
    with pytest.raises(ValueError, match=r"Expected `data` to hold finite values"):
        LinearSubspace.from_data([(good, torch.zeros(8)), (bad, torch.zeros(8))], 2)


def test_from_data_defaults_are_the_documented_ones():
    import inspect

    params = inspect.signature(LinearSubspace.from_data).parameters
    defaults = {k: params[k].default for k in ("center", "method", "oversampling", "iterations", "seed", "chunk_size")}
    assert defaults == {
        "center": True,
        "method": "auto",
        "oversampling": 10,
        "iterations": 4,
        "seed": 0,
        "chunk_size": 4096,
    }


@pytest.mark.parametrize("method", ["full", "randomized"])
def test_centring_on_and_off_with_a_large_offset(method):
    # a plane through a far-away point: centred, the fit finds the plane; uncentred, the first
    # direction is (close to) the offset's, for the full and the randomized route alike
    gen = torch.Generator().manual_seed(2)
    plane = torch.linalg.qr(torch.randn(40, 2, generator=gen, dtype=torch.float64))[0].T
    offset = 50.0 * plane.new_tensor([1.0] + [0.0] * 39)
    data = torch.randn(300, 2, generator=gen, dtype=torch.float64) @ plane + offset
    centred = LinearSubspace.from_data(data, 2, method=method)
    assert float(principal_angles(centred.rows, plane).max()) < 1e-8
    torch.testing.assert_close(centred.mean, data.mean(0), rtol=0, atol=1e-12)
    raw = LinearSubspace.from_data(data, 1, center=False, method=method)
    assert float(raw.rows[0].abs()[0]) > 0.999 and float(raw.mean.abs().max()) == 0.0


def test_dim_equal_to_the_smaller_size_is_accepted():
    data = torch.randn(3, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    space = LinearSubspace.from_data(data, 3, center=False, method="full")
    assert space.dim == 3


def test_the_basis_follows_each_calls_dtype_after_a_call_in_another():
    space = LinearSubspace(torch.eye(5, dtype=torch.float64)[:2])
    assert space.basis(torch.zeros(1, 5)).dtype == torch.float32
    assert space.basis(torch.zeros(1, 5, dtype=torch.float64)).dtype == torch.float64
    assert space.basis(torch.zeros(1, 5)).dtype == torch.float32


def test_streamed_data_may_start_with_a_single_example_but_not_be_empty():
    gen = torch.Generator().manual_seed(3)
    batches = [
        torch.randn(1, 5, generator=gen, dtype=torch.float64),
        torch.randn(9, 5, generator=gen, dtype=torch.float64),
    ]
    streamed = LinearSubspace.from_data(batches, 2, method="full")
    whole = LinearSubspace.from_data(torch.cat(batches), 2, method="full")
    torch.testing.assert_close(streamed.rows.abs(), whole.rows.abs(), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="`data`"):
        LinearSubspace.from_data([], 2)


def test_an_explicit_rtol_of_the_basis_refuses_a_direction_the_default_keeps():
    # the third row leaves the span of the first two by 1e-6: a real direction by default,
    # dependent under rtol=1e-3, and then refused naming the argument
    basis = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 1e-6, 0]], dtype=torch.float64)
    assert LinearSubspace(basis).dim == 3
    with pytest.raises(ValueError, match=r"Expected `basis` to have full rank 3 .* threshold 1\.0e-03"):
        LinearSubspace(basis, rtol=1e-3)


def test_mean_and_explained_variance_are_none_until_fitted_from_data():
    space = LinearSubspace(torch.eye(3)[:1])
    assert space.mean is None and space.explained_variance is None


@pytest.mark.parametrize("n", [2, 3, 7])
def test_explained_variance_is_the_unbiased_variance_along_each_direction(n):
    # float64 reference: the sample variance (divisor N - 1) of the data along each fitted row
    data = torch.randn(n, 6, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    space = LinearSubspace.from_data(data, 1, method="full")
    along = (data - data.mean(0)) @ space.rows.T
    torch.testing.assert_close(space.explained_variance, along.var(0, correction=1), rtol=1e-12, atol=0)


def _plane_data(n, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    plane = torch.randn(2, d, generator=gen, dtype=torch.float64)
    return torch.randn(n, 2, generator=gen, dtype=torch.float64) @ plane + 1e-3 * torch.randn(
        n, d, generator=gen, dtype=torch.float64
    )


@pytest.mark.parametrize(("d", "route"), [(48, "full"), (49, "randomized"), (200, "randomized"), (20, "full")])
def test_auto_takes_the_randomized_route_exactly_when_four_sketch_widths_are_below_min_n_d(d, route):
    # dim 2 + oversampling 10 = a sketch of 12 columns: randomized iff 4 * 12 < min(N, D); the two
    # routes differ in rounding, so the auto result equals exactly one of them bit for bit
    data = _plane_data(300, d)
    auto = LinearSubspace.from_data(data, 2)
    chosen = LinearSubspace.from_data(data, 2, method=route)
    other = LinearSubspace.from_data(data, 2, method="randomized" if route == "full" else "full")
    assert torch.equal(auto.rows, chosen.rows) and torch.equal(auto.explained_variance, chosen.explained_variance)
    assert not torch.equal(auto.rows, other.rows)


def test_the_randomized_defaults_are_the_ones_used_when_left_out():
    # the documented defaults, given explicitly, give the same bits; other values do not
    data = _plane_data(200, 60, seed=1)
    default = LinearSubspace.from_data(data, 2, method="randomized")
    explicit = LinearSubspace.from_data(data, 2, method="randomized", oversampling=10, iterations=4, seed=0)
    assert torch.equal(default.rows, explicit.rows)
    for other in ({"oversampling": 11}, {"iterations": 5}, {"seed": 1}):
        changed = LinearSubspace.from_data(
            data, 2, method="randomized", **{**dict(oversampling=10, iterations=4, seed=0), **other}
        )
        assert not torch.equal(default.rows, changed.rows), other


def test_a_stream_of_one_example_is_fitted():
    x = torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64)
    space = LinearSubspace.from_data([x], 1, center=False)
    torch.testing.assert_close(space.rows.abs(), torch.tensor([[0.6, 0.8, 0.0]], dtype=torch.float64))


def test_a_stream_of_mixed_precision_is_fitted_in_and_returned_in_the_wider_dtype():
    gen = torch.Generator().manual_seed(5)
    wide = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    space = LinearSubspace.from_data([wide[:10].float(), wide[10:]], 2, method="full")
    assert space.mean.dtype == torch.float64 and space.explained_variance.dtype == torch.float64


def test_vectors_of_a_tuple_must_hold_the_same_number_of_vectors_per_example():
    space = LinearSubspace(torch.randn(2, 5), input_shape=((2,), (3,)))
    x = (torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"`vectors`.*same number M"):
        space.components(x, (torch.randn(4, 6, 2), torch.randn(4, 5, 3)))


def test_project_orthogonal_is_the_rest_of_the_vector():
    space = LinearSubspace(torch.randn(2, 6, dtype=torch.float64))
    x, v = torch.zeros(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    off = space.project_orthogonal(x, v)
    torch.testing.assert_close(off, v - v @ space.projection_matrix(), rtol=1e-12, atol=1e-12)
    assert repr(space) == "LinearSubspace(dim=2, input_shape=torch.Size([6]))"


@pytest.mark.parametrize("shape", [(2, 7), (3, 2, 7), (5, 2, 6), (2, 6, 1)])
def test_an_estimator_returning_a_basis_of_the_wrong_shape_is_caught(shape):
    from captum_pags.manifold import TangentSpace

    class Broken(TangentSpace):
        dim = 2

        def _basis(self, inputs):
            return torch.zeros(shape)

    with pytest.raises(RuntimeError, match=r"Broken._basis returned shape .* expected \(k, 6\) or \(3, k, 6\)"):
        Broken().basis(torch.zeros(3, 6))
