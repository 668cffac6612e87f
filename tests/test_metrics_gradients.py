"""The kernel's class-score gradients and target reading, against float64 Jacobians."""

import math

import pytest
import torch
from torch import nn

from captum_pags._kernel._autodiff import ClassScore, class_gradients
from captum_pags._kernel._targets import predicted_classes, read_target


def _mlp(seed: int, d: int = 5, c: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 7), nn.Tanh(), nn.Linear(7, c)).double()


def _jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, C, D) per-example Jacobian of the logits, one example at a time."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: model(v[None])[0], xi) for xi in x])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_gradients_match_the_jacobian(seed):
    model = _mlp(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=gen)
    jac = _jacobian(model, x)
    p = torch.softmax(model(x), dim=1).detach()
    rows = torch.arange(6)
    expected = {
        "logit": jac[rows, y],
        "log_softmax": jac[rows, y] - torch.einsum("nc,ncd->nd", p, jac),
        "logit_sum": jac.sum(1),
    }
    for kind, ref in expected.items():
        got = class_gradients(model, x, y, kind=kind)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        chunked = class_gradients(model, x, y, kind=kind, batch_size=4)
        torch.testing.assert_close(chunked, got, rtol=1e-12, atol=1e-14)


def test_predicted_target_is_the_argmax_class():
    model = _mlp(3)
    x = torch.randn(8, 5, dtype=torch.float64)
    pred = model(x).argmax(1)
    got = class_gradients(model, x, "predicted", kind="logit", batch_size=3)
    torch.testing.assert_close(got, class_gradients(model, x, pred, kind="logit"), rtol=0, atol=0)


def test_logit_sum_ignores_target_and_create_graph_keeps_the_graph():
    model = _mlp(4)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    g = class_gradients(model, x, None, kind="logit_sum", create_graph=True)
    assert g.requires_grad
    (second,) = torch.autograd.grad(g.pow(2).sum(), x)
    assert torch.isfinite(second).all() and second.abs().sum() > 0
    assert not class_gradients(model, x.detach(), [0, 1, 2], kind="logit_sum").requires_grad


def test_tuple_inputs_return_a_tuple():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(4, 3)

        def forward(self, u, v):
            return self.a(u) + self.b(v)

    model = Two()
    u, v = torch.randn(2, 2), torch.randn(2, 4)
    gu, gv = class_gradients(model, (u, v), 1, kind="logit")
    torch.testing.assert_close(gu, model.a.weight[1].expand(2, 2).detach())
    torch.testing.assert_close(gv, model.b.weight[1].expand(2, 4).detach())


def test_class_gradients_refuse_bad_targets_and_outputs():
    model = _mlp(0)
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`target`.*None"):
        class_gradients(model, x, None, kind="logit")
    with pytest.raises(ValueError, match=r"`target` labels in \[0, 4\)"):
        class_gradients(model, x, [0, 4], kind="log_softmax")
    with pytest.raises(ValueError, match="`gradient`"):
        class_gradients(model, x, 0, kind="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, C\) class scores"):
        ClassScore(lambda v: v.sum(1), "logit")(x)
    with pytest.raises(ValueError, match="NaN"):
        class_gradients(lambda v: torch.full((2, 3), math.nan), x, "predicted", kind="logit")


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (1.5, ValueError, "fractional"),
        (torch.tensor([0.0, math.nan]), ValueError, "nan"),
        (torch.tensor([0.0, math.inf]), ValueError, "inf"),
        ([0, 0.5], ValueError, "0.5"),
        (True, TypeError, "bool"),
        (torch.tensor([True, False]), TypeError, "bool"),
        ("max", TypeError, "'max'"),
        ({0: 1}, TypeError, "dict"),
        ([0, "a"], TypeError, "str"),
        ([0, 1, 2], ValueError, r"shape \(2,\)"),
        (-1, ValueError, r"\[-1, -1\]"),
        (torch.tensor([0, 3]), ValueError, r"\[0, 3\)"),
    ],
)
def test_read_target_refuses_with_the_argument_name(target, error, match):
    with pytest.raises(error, match=match) as info:
        read_target(target, 2, num_classes=3)
    assert "`target`" in str(info.value)


def test_read_target_accepts_every_integer_form():
    import numpy as np

    for target in (2, np.int64(2), [2, 2], (2, 2), torch.tensor([2, 2], dtype=torch.uint8), torch.tensor(2)):
        torch.testing.assert_close(read_target(target, 2, num_classes=3), torch.tensor([2, 2]))
    torch.testing.assert_close(read_target(torch.tensor([1.0, 0.0]), 2), torch.tensor([1, 0]))
    torch.testing.assert_close(read_target(torch.tensor([[1], [0]]), 2), torch.tensor([1, 0]))
    assert read_target(None, 2) is None
    with pytest.raises(ValueError, match=">= 0"):
        read_target(-1, 2)
    with pytest.raises(ValueError, match="'predicted' is not supported"):
        read_target("predicted", 2)
    with pytest.raises(ValueError, match=r"\(N=2, C\) class scores for `target`='predicted' but got \(3, 2\)"):
        predicted_classes(torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match=r"but got \(2,\)"):
        predicted_classes(torch.zeros(2), 2)
    with pytest.raises(ValueError, match="but got list"):
        predicted_classes([[0.0, 1.0]], 1)
    scores = torch.tensor([[0.0, 1.0], [math.nan, 0.0], [2.0, math.nan]])
    with pytest.raises(ValueError, match="but 2 example\\(s\\) have NaN scores"):
        predicted_classes(scores, 3)


def test_input_gradients_of_multi_dimensional_outputs_and_their_targets():
    from captum_pags._kernel._autodiff import input_gradients

    torch.manual_seed(0)
    lin = nn.Linear(4, 6)

    def grid(v):
        return lin(v).reshape(-1, 2, 3)

    x = torch.randn(3, 4)
    (g,) = input_gradients(grid, (x,), target=(1, 2))  # Captum's tuple index into (2, 3) outputs
    torch.testing.assert_close(g, lin.weight[5].expand(3, 4).detach(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="`target` to select one output per example"):
        input_gradients(grid, (x,), target=1)
    with pytest.raises(ValueError, match=r"select one output per example.*shape \(3, 6\)"):
        input_gradients(lin, (x,), target=None)
    with pytest.raises(TypeError, match="`inputs` to be floating-point tensors"):
        input_gradients(lin, (x.long(),), target=0)


def test_input_gradients_keep_the_users_graph_and_fill_unused_inputs_with_zeros():
    from captum_pags._kernel._autodiff import input_gradients

    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(3, 5, dtype=torch.float64)
    (g, g_unused) = input_gradients(lambda a, b: (a**3).sum(1, keepdim=True), (x, unused), None, create_graph=True)
    torch.testing.assert_close(g, 3 * x.detach() ** 2, rtol=1e-14, atol=0)
    torch.testing.assert_close(g_unused, torch.zeros_like(unused), rtol=0, atol=0)
    (second,) = torch.autograd.grad(g.sum(), x)  # the graph reaches the user's own tensor
    torch.testing.assert_close(second, 6 * x.detach(), rtol=1e-14, atol=0)
    (plain,) = input_gradients(lambda a: (a**3).sum(1, keepdim=True), (x.detach(),), None)
    assert not plain.requires_grad  # create_graph is off by default


def test_class_gradients_check_batch_size():
    model = _mlp(0)
    x = torch.randn(3, 5, dtype=torch.float64)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"`batch_size` to be an int >= 1 but got"):
            class_gradients(model, x, 0, kind="logit", batch_size=bad)
    torch.testing.assert_close(
        class_gradients(model, x, 0, kind="logit", batch_size=1), class_gradients(model, x, 0, kind="logit")
    )


def test_class_gradients_chunk_per_example_arguments_and_predictions():
    """Per-example extra arguments follow their examples through the chunks, also for 'predicted'."""
    torch.manual_seed(1)
    lin = nn.Linear(3, 4).double()
    sizes = []

    def model(v, scale):
        sizes.append(v.shape[0])
        return lin(v) * scale[:, None]

    x = torch.randn(5, 3, dtype=torch.float64)
    scale = torch.tensor([1.0, -2.0, 3.0, -0.5, 4.0], dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    expected = lin.weight.detach()[y] * scale[:, None]
    for kind_target in ("true", "predicted"):
        target = y if kind_target == "true" else "predicted"
        pred = (lin(x) * scale[:, None]).argmax(1)
        ref = expected if kind_target == "true" else lin.weight.detach()[pred] * scale[:, None]
        sizes.clear()
        got = class_gradients(model, x, target, kind="logit", batch_size=2, additional_forward_args=(scale,))
        torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)
        assert max(sizes) <= 2


def test_target_and_class_score_messages_say_what_came():
    with pytest.raises(TypeError, match=r"`target` to hold integer class labels but got dtype torch.bool"):
        read_target(torch.tensor([True, False]), 2)
    with pytest.raises(ValueError, match=r"`target` to hold integer class labels but got nan"):
        read_target(torch.tensor([math.nan, math.nan, 1.0]), 3)
    with pytest.raises(ValueError, match=r"but got the fractional value 1.5"):
        read_target(torch.tensor([1.5, 2.5, 0.0]), 3)
    with pytest.raises(ValueError, match=r"one label per example but got an element of shape \(2,\)"):
        read_target([torch.tensor([0, 1]), torch.tensor(1)], 2)
    torch.testing.assert_close(read_target([torch.tensor(2), torch.tensor(0.0)], 2), torch.tensor([2, 0]))
    with pytest.raises(ValueError, match=r"`labels` to hold integer class labels but got nan"):
        read_target([0, math.nan], 2, name="labels")
    with pytest.raises(ValueError, match=r"`labels`='predicted'"):
        read_target("predicted", 2, name="labels", predict=lambda: torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"`gradient` to be one of 'log_softmax', 'logit', 'logit_sum' but got 'soft'"):
        ClassScore(lambda v: v, "soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, C\) class scores for gradient='logit' but got \(2,\)"):
        ClassScore(lambda v: v.sum(1), "logit")(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"for gradient='log_softmax' but got list"):
        ClassScore(lambda v: [v], "log_softmax")(torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosine_is_bounded_and_scale_safe_in_every_precision(dtype):
    from captum_pags.metrics import score_alignment

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 37, generator=gen, dtype=dtype)
    for method in ("cosine", "pearson"):
        same, opposite = score_alignment(a, 3 * a, method), score_alignment(a, -3 * a, method)
        assert bool((same <= 1).all()) and bool((opposite >= -1).all())
        torch.testing.assert_close(same, torch.ones(500, dtype=dtype), rtol=0, atol=1e-6)
    s = torch.randn(500, 37, generator=gen, dtype=dtype)
    tiny, huge = (1e-200, 1e200) if dtype == torch.float64 else (1e-30, 1e30)
    torch.testing.assert_close(score_alignment(a * tiny, s * huge), score_alignment(a, s), rtol=1e-6, atol=1e-7)
