"""Unit tests of the kernel's helpers, called directly: products, gradients, chunking, checks, I/O.

The rest of the suite reaches these through the public API; here each helper's own contract is
pinned down (float64 references, exact values, the error it names), so that a wrong helper fails
here first and the kernel's mutation room needs only these fast tests.
"""

import math
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_pags._kernel._autodiff import class_gradients, input_gradients, jvp_many, vjp_many
from captum_pags._kernel._captum_compat import expand_forward_args, expand_target
from captum_pags._kernel._io import atomic_write
from captum_pags._kernel._model_state import unwrap_parallel
from captum_pags._kernel._tensors import chunked_map, chunks, index_examples
from captum_pags._kernel._validation import check_positive


def _cubic(x):
    """A per-example map (N, 3) -> (N, 2) with an input-dependent Jacobian."""
    w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, 2.0]], dtype=x.dtype)
    return (x**3) @ w.T + x[:, :1] * x[:, 1:2]


def _jacobians(fn, x):
    """Slow float64 reference: the full Jacobian of each example, one at a time."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], xi) for xi in x])


@pytest.mark.parametrize("vectorize", [True, False])
def test_jvp_and_vjp_products_match_the_full_jacobian(vectorize):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    jac = _jacobians(_cubic, x)  # (N, 2, 3)
    tangents = torch.randn(5, 4, 3, generator=gen, dtype=torch.float64)
    cotangents = torch.randn(5, 4, 2, generator=gen, dtype=torch.float64)
    jv = jvp_many(_cubic, x, tangents, vectorize=vectorize)
    vj = vjp_many(_cubic, x, cotangents, vectorize=vectorize)
    assert jv.shape == (5, 4, 2) and vj.shape == (5, 4, 3)
    torch.testing.assert_close(jv, torch.einsum("nij,mnj->mni", jac, tangents), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vj, torch.einsum("nij,mni->mnj", jac, cotangents), rtol=1e-12, atol=1e-12)


def test_a_buffer_updated_in_place_under_a_transform_is_explained():
    bn = nn.BatchNorm1d(3).train()
    with pytest.raises(RuntimeError, match="updated a buffer in place"):
        jvp_many(lambda v: bn(v), torch.randn(4, 3), torch.randn(2, 4, 3))


def test_chunked_map_calls_the_function_on_chunks_of_at_most_chunk_size():
    a, b = torch.arange(14.0).reshape(7, 2), torch.arange(7.0)
    sizes = []

    def fn(u, v):
        sizes.append(u.shape[0])
        return u * v[:, None]

    expected = a * b[:, None]
    torch.testing.assert_close(chunked_map(fn, a, b, chunk_size=3), expected, rtol=0, atol=0)
    assert sizes == [3, 3, 1]
    sizes.clear()
    torch.testing.assert_close(chunked_map(fn, a, b, chunk_size=7), expected, rtol=0, atol=0)
    assert sizes == [7]
    sizes.clear()
    chunked_map(fn, a, b, chunk_size=None)
    assert sizes == [7]
    assert [(s.start, s.stop) for s in chunks(5, 2)] == [(0, 2), (2, 4), (4, 5)]


def test_index_examples_indexes_per_example_tensors_and_passes_the_rest():
    index = torch.tensor([2, 0])
    per_example = torch.arange(6).reshape(3, 2)
    single = index_examples(per_example, index, 3)
    assert isinstance(single, torch.Tensor) and single.tolist() == [[4, 5], [0, 1]]
    scalar = torch.tensor(5.0)
    out = index_examples((per_example, scalar, "mode", 7), index, 3)
    assert isinstance(out, tuple) and len(out) == 4
    assert out[0].tolist() == [[4, 5], [0, 1]] and out[1] is scalar and out[2:] == ("mode", 7)
    assert index_examples(None, index, 3) is None
    with pytest.raises(ValueError, match=r"`additional_forward_args` to have batch size 3"):
        index_examples(torch.zeros(4), index, 3)


def test_expanded_forward_args_tile_the_batch_by_default_like_captum():
    args = (torch.tensor([1, 2]),)
    assert expand_forward_args(args, 2)[0].tolist() == [1, 2, 1, 2]
    assert expand_forward_args(args, 2, interleave=True)[0].tolist() == [1, 1, 2, 2]
    assert expand_forward_args(None, 3) is None
    assert expand_target(torch.tensor([3, 4]), 2).tolist() == [3, 4, 3, 4]


@pytest.mark.parametrize("allow_zero", [False, True])
def test_check_positive_reads_one_element_tensors_and_names_the_bound(allow_zero):
    assert check_positive("sigma", torch.tensor(0.25), allow_zero=allow_zero) == 0.25
    assert check_positive("sigma", torch.tensor([2.0]), allow_zero=allow_zero) == 2.0
    assert check_positive("sigma", 3, allow_zero=allow_zero) == 3.0
    with pytest.raises(TypeError, match="Expected `sigma` to be a number but got Tensor"):
        check_positive("sigma", torch.tensor([1.0, 2.0]), allow_zero=allow_zero)
    bound = ">= 0" if allow_zero else "> 0"
    with pytest.raises(ValueError, match=f"Expected `sigma` to be a finite number {bound} but got -1.0"):
        check_positive("sigma", -1.0, allow_zero=allow_zero)
    assert (check_positive("sigma", 0.0, allow_zero=True) == 0.0) if allow_zero else True
    if not allow_zero:
        with pytest.raises(ValueError, match="finite number > 0 but got 0.0"):
            check_positive("sigma", 0.0)


def _partial_model(a, b):
    """Logits that read only the first of two inputs: the second one's gradient is zero."""
    return torch.stack([a.sum(1), (a**2).sum(1)], 1)


@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_class_gradients_of_an_unused_input_are_zeros_of_its_shape(batch_size):
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], dtype=torch.float64)
    b = torch.ones(3, 4, dtype=torch.float64)
    ga, gb = class_gradients(_partial_model, (a, b), [1, 1, 0], kind="logit", batch_size=batch_size)
    torch.testing.assert_close(ga, torch.stack([2 * a[0], 2 * a[1], torch.ones(2, dtype=torch.float64)]))
    assert isinstance(gb, torch.Tensor) and gb.shape == b.shape and float(gb.abs().max()) == 0.0
    grads = input_gradients(_partial_model, (a, b), target=0)
    assert float(grads[1].abs().max()) == 0.0 and grads[1].shape == b.shape


def test_class_gradients_refuse_a_string_target_other_than_predicted():
    model = nn.Linear(2, 3)
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        with pytest.raises((TypeError, ValueError), match="`target`"):
            class_gradients(model, torch.zeros(2, 2), "first", kind="logit")
    finally:
        handle.remove()
    assert calls == []  # refused before the model runs
    predicted = class_gradients(model, torch.zeros(2, 2), "predicted", kind="logit")
    label = int(model(torch.zeros(1, 2)).argmax())
    torch.testing.assert_close(predicted, model.weight.detach()[label].expand(2, 2))


def test_input_gradients_of_a_single_example_with_one_output():
    model = nn.Linear(3, 1)
    (grad,) = input_gradients(model, (torch.zeros(1, 3),))
    torch.testing.assert_close(grad, model.weight.detach())
    with pytest.raises(ValueError, match="select one output per example"):
        input_gradients(nn.Linear(3, 2), (torch.zeros(1, 3),))


def test_atomic_write_of_bytes_and_by_a_writer_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"  # missing parents are made
    atomic_write(path, b"first")
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    seen = []

    def writer(tmp):
        # a hidden temporary file in the same folder (so the rename is atomic), not matching *.bin
        seen.append(Path(tmp))
        with open(tmp, "wb") as f:
            f.write(b"second")

    atomic_write(path, writer)
    assert seen[0].parent == path.parent and seen[0].name.startswith(".out.bin.") and seen[0].suffix == ".tmp"
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]


def test_unwrap_parallel_reaches_the_module_through_nested_wrappers():
    inner = nn.Linear(2, 2)
    assert unwrap_parallel(nn.DataParallel(nn.DataParallel(inner))) is inner
    assert unwrap_parallel(inner) is inner


def test_per_example_projection_matches_a_float64_loop():
    from captum_pags._kernel._linalg import project_onto_rows

    gen = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(4, 7, 2, generator=gen, dtype=torch.float64))[0].transpose(1, 2)  # (N, k, D)
    vectors = torch.randn(4, 3, 7, generator=gen, dtype=torch.float64)
    expected = torch.stack([v @ b.T @ b for b, v in zip(basis, vectors)])
    torch.testing.assert_close(project_onto_rows(basis, vectors), expected, rtol=1e-12, atol=1e-12)
    mixed = project_onto_rows(basis, vectors.float())  # float64 math, float32 out
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed.double(), project_onto_rows(basis, vectors.float().double()), rtol=1e-7, atol=1e-7)


def test_targets_of_integral_floats_and_of_one_element_tensors_are_read_exactly():
    from captum_pags._kernel._targets import read_target

    assert read_target(2.0, 3).tolist() == [2, 2, 2]
    assert read_target([torch.tensor(1), torch.tensor(0.0)], 2).tolist() == [1, 0]
    labels = read_target(torch.tensor([1.0, 3.0], dtype=torch.float16), 2)
    assert labels.dtype == torch.long and labels.tolist() == [1, 3]
    with pytest.raises(ValueError, match="Expected `target` to hold integer class labels but got 1.5"):
        read_target([torch.tensor(1.5), 0], 2)
    with pytest.raises(ValueError, match="fractional value 2.5"):
        read_target(2.5, 3)


def test_preserved_state_freezes_and_unfreezes_parameters_and_restores_them():
    from captum_pags._kernel._model_state import preserved_state

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[1].bias.requires_grad_(False)
    with preserved_state(model, requires_grad=False):
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]
    with preserved_state(model, requires_grad=True):
        assert all(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]


def test_finite_values_whose_sum_overflows_are_accepted():
    from captum_pags._kernel._validation import check_batch

    big = torch.full((2, 3), 60000.0, dtype=torch.float16)  # finite; the float16 sum is inf
    assert not bool(torch.isfinite(big.sum()))
    assert check_batch("inputs", [big]) == 2
    big[1, 2] = float("inf")
    with pytest.raises(ValueError, match="Expected `inputs` to hold finite values"):
        check_batch("inputs", [big])


def test_the_module_behind_a_bound_method_is_found():
    from captum_pags._kernel._model_state import owning_module

    model = nn.Linear(2, 2)
    assert owning_module(model) is model and owning_module(model.forward) is model
    assert owning_module(lambda x: x) is None and owning_module("text".upper) is None


def _rows(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(("n", "d", "route"), [(3, 12, "gram"), (3, 11, "svd"), (2, 40, "gram")])
def test_principal_rows_auto_takes_the_gram_route_exactly_when_4n_is_at_most_d(n, d, route):
    from captum_pags._kernel._linalg import principal_rows

    v = _rows(n, d, seed=n + d)
    auto = principal_rows(v)
    chosen = principal_rows(v, method=route)
    other = principal_rows(v, method="svd" if route == "gram" else "gram")
    assert torch.equal(auto[1], chosen[1]) and torch.equal(auto[0], chosen[0])
    assert not torch.equal(auto[1], other[1])
    with pytest.raises(ValueError, match="Expected `vectors` to have shape"):
        principal_rows(torch.zeros(3))


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_an_explicit_rtol_of_principal_and_orthonormal_rows_is_used(method):
    from captum_pags._kernel._linalg import orthonormal_rows, principal_rows

    # a third row that leaves the span of the first two by 1e-6: kept by default, dropped at 1e-3
    v = torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [1.0, 1.0, 1e-6, 0, 0]], dtype=torch.float64)
    v = torch.cat([v, torch.zeros(3, 15, dtype=torch.float64)], 1)
    assert int((principal_rows(v, method=method)[1].norm(dim=-1) > 0.5).sum()) == 3
    assert int((principal_rows(v, rtol=1e-3, method=method)[1].norm(dim=-1) > 0.5).sum()) == 2
    assert int((orthonormal_rows(v, drop=True).norm(dim=-1) > 0.5).sum()) == 3
    assert int((orthonormal_rows(v, rtol=1e-3, drop=True).norm(dim=-1) > 0.5).sum()) == 2


def test_principal_angles_of_equal_size_sets_are_symmetric_also_with_a_dropped_row():
    from captum_pags._kernel._linalg import orthonormal_rows, principal_angles

    a = orthonormal_rows(_rows(3, 8, seed=1))
    b = orthonormal_rows(_rows(3, 8, seed=2)).clone()
    b[2] = 0.0  # a dropped direction
    torch.testing.assert_close(principal_angles(a, b), principal_angles(b, a), rtol=0, atol=1e-12)
    torch.testing.assert_close(principal_angles(a, a), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-7)


def test_chunks_of_no_positive_size_cover_everything_at_once():
    for size in (None, 0, -1, 5, 9):
        assert [(c.start, c.stop) for c in chunks(5, size)] == [(0, 5)]


def test_the_default_threshold_follows_the_larger_size_and_the_route():
    from captum_pags._kernel._linalg import default_rtol

    eps32, eps64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps
    for n, d in ((3, 3072), (3072, 3)):
        assert default_rtol(torch.float64, n, d) == 10.0 * math.sqrt(3072) * eps64
        assert default_rtol(torch.float32, n, d) == 10.0 * math.sqrt(3072) * eps32
        assert default_rtol(torch.bfloat16, n, d) == 10.0 * math.sqrt(3072) * eps32
        assert default_rtol(torch.float64, n, d, "gram") == math.sqrt(10.0 * 3072 * eps64)
    assert default_rtol(torch.float64, 0, 0) == 10.0 * eps64


@pytest.mark.parametrize("k", [2, 3])
def test_batched_gram_rows_equal_each_example_on_its_own(k):
    from captum_pags._kernel._linalg import orthonormal_rows, principal_rows

    vectors = torch.randn(4, 3, 20, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    sv, rows = principal_rows(vectors, k, method="gram")
    assert rows.shape == (4, k, 20)
    for i in range(4):
        sv_i, rows_i = principal_rows(vectors[i], k, method="gram")
        torch.testing.assert_close(sv[i], sv_i, rtol=1e-12, atol=0)
        torch.testing.assert_close(rows[i].T @ rows[i], rows_i.T @ rows_i, rtol=0, atol=1e-12)
        reference = torch.linalg.svd(vectors[i], full_matrices=False)
        torch.testing.assert_close(sv_i, reference.S[:k], rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="`basis`"):
        orthonormal_rows("rows")
