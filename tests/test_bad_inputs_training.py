"""Bad-input matrix of the training room: losses, PGD, SmoothedClassifier and fit.

Every case ends in exactly one of: a ``ValueError``/``TypeError`` (or ``FloatingPointError`` for a
non-finite training loss) whose message names the argument; a warning; the exactly right answer.
After every case, including those that raised, the model's modes, parameters, buffers (BatchNorm
statistics), ``requires_grad``, ``.grad`` and hooks are as they were.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from captum_pags.datasets import GaussianSubspaceMixture
from captum_pags.training import (
    PGD,
    AdversarialLoss,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    SmoothedClassifier,
    StandardLoss,
    fit,
)

N, C, SHAPE = 4, 3, (1, 6, 6)


class Net(nn.Module):
    """BatchNorm and Dropout (train/eval mode matters), 3 classes on (1, 6, 6) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(36, 16), nn.BatchNorm1d(16), nn.Softplus(), nn.Dropout(0.1), nn.Linear(16, C)
        )

    def forward(self, x):
        return self.net(x)


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    }


def _assert_same_state(model: nn.Module, before: dict[str, Any], buffers: bool = True) -> None:
    after = _state(model)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for key in ("grads", "params", "buffers") if buffers else ("grads", "params"):
        assert len(after[key]) == len(before[key])
        for a, b in zip(after[key], before[key]):
            assert (a is None) == (b is None), key
            if a is not None:
                assert torch.equal(a, b), key


def _x(dtype=torch.float32, n=N):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(0)).to(dtype)


def _y(n=N):
    return torch.tensor([0, 1, 2, 1][:n])


def _nan_x():
    x = _x()
    x[1, 0, 2, 2] = float("nan")
    return x


def _inf_x():
    x = _x()
    x[0, 0, 0, 0] = float("inf")
    return x


@dataclass
class Case:
    """One call and what it must give: ``("raises", Exc, match)``, ``("warns", Warning, match)`` or ``("answer",)``.

    ``trains`` marks a successful training-loss call: in train mode its forward pass updates the
    BatchNorm statistics, as any forward pass of the model would; everything else stays as it was.
    """

    name: str
    call: Callable[[nn.Module], Any]
    expect: tuple
    trains: bool = False


_SCORES = GaussianSubspaceMixture(num_classes=C, intrinsic_dim=4, shape=SHAPE, off_std=1e-3, seed=0).score_model

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "standard": StandardLoss,
    "gradient_norm": lambda: GradientNormLoss(0.5),
    "gradient_norm_fd": lambda: GradientNormLoss(0.5, method="finite_difference"),
    "noise_consistency": lambda: NoiseConsistencyLoss(0.5, 0.1),
    "randomized_smoothing": lambda: RandomizedSmoothingLoss(0.1),
    "adversarial": lambda: AdversarialLoss(0.3, steps=2),
    "score_alignment": lambda: ScoreAlignmentLoss(0.5, _SCORES, 0.5),
}


def _loss_cases(loss_name: str) -> list[Case]:
    make = LOSSES[loss_name]

    def call(x=None, y=None, model=None):
        return lambda m: make()(model if model is not None else m, _x() if x is None else x, _y() if y is None else y)

    def same_as(labels, reference):
        def check(m):
            twin = copy.deepcopy(m)  # the reference call starts from the same BatchNorm statistics
            torch.manual_seed(1)
            a = make()(m, _x(), labels)
            torch.manual_seed(1)
            b = make()(twin, _x(), reference)
            assert torch.equal(a.detach(), b.detach())

        return check

    same_as_tensor_labels = same_as(1, torch.ones(N, dtype=torch.long))
    list_labels = same_as([0, 1, 2, 1], _y())
    int32_labels = same_as(_y().int(), _y())

    fin = "Expected `inputs` to hold finite values"
    lab = "Expected `targets` to hold integer class labels"
    return [
        Case("int64 inputs", call(x=_x().long()), ("raises", TypeError, "Expected `inputs` to be a floating point")),
        Case("uint8 inputs", call(x=(_x() * 255).to(torch.uint8)), ("raises", TypeError, "`inputs` to be a floating")),
        Case("bf16 inputs", call(x=_x(torch.bfloat16)), ("raises", TypeError, r"`inputs` to have the dtype .*float32")),
        Case("f16 inputs", call(x=_x(torch.float16)), ("raises", TypeError, r"`inputs` to have the dtype .*float32")),
        Case("f64 inputs", call(x=_x(torch.float64)), ("raises", TypeError, r"`inputs` to have the dtype .*float32")),
        Case("NaN inputs", call(x=_nan_x()), ("raises", ValueError, fin)),
        Case("inf inputs", call(x=_inf_x()), ("raises", ValueError, fin)),
        Case("empty batch", call(x=_x(n=0), y=_y(0)), ("raises", ValueError, "`inputs` to hold at least one example")),
        Case("0-d inputs", call(x=torch.tensor(1.0)), ("raises", ValueError, "`inputs` to have a batch dimension")),
        Case("list inputs", call(x=[[0.0] * 36] * N), ("raises", TypeError, "Expected `inputs` to be a torch.Tensor")),
        Case("float labels", call(y=_y().float()), ("raises", TypeError, lab)),
        Case("fractional labels", call(y=torch.tensor([0.5, 1.0, 2.0, 1.0])), ("raises", TypeError, lab)),
        Case("NaN labels", call(y=torch.tensor([0.0, float("nan"), 1.0, 2.0])), ("raises", TypeError, lab)),
        Case("bool labels", call(y=torch.tensor([True, False, True, False])), ("raises", TypeError, lab)),
        Case("python bool label", call(y=True), ("raises", TypeError, "Expected `targets` to be class labels")),
        Case(
            "None labels",
            lambda m: make()(m, _x(), None),
            ("raises", TypeError, "Expected `targets` to be class labels"),
        ),
        Case("string labels", call(y="cat"), ("raises", TypeError, "Expected `targets` to be class labels")),
        Case("short labels", call(y=_y(3)), ("raises", ValueError, r"Expected `targets` to have shape \(4,\)")),
        Case("2-d labels", call(y=_y()[:, None]), ("raises", ValueError, r"Expected `targets` to have shape \(4,\)")),
        Case(
            "negative label",
            call(y=torch.tensor([0, -1, 2, 1])),
            ("raises", ValueError, "`targets` to be class labels >= 0"),
        ),
        Case("label >= C", call(y=torch.tensor([0, 3, 2, 1])), ("raises", ValueError, r"`targets` labels in \[0, 3\)")),
        Case("model not callable", call(model=3), ("raises", TypeError, "Expected `model` to be callable")),
        Case(
            "1-d model output",
            call(model=lambda x: x.flatten(1).sum(1)),
            ("raises", ValueError, r"`model` to return logits of shape \(4, C\)"),
        ),
        Case("int label broadcast", same_as_tensor_labels, ("answer",), trains=True),
        Case("list labels", list_labels, ("answer",), trains=True),
        Case("int32 labels", int32_labels, ("answer",), trains=True),
    ]


def _pgd_cases() -> list[Case]:
    def perturb(x=None, y=None, **kw):
        return lambda m: PGD(m, **{"epsilon": 0.3, "steps": 2, **kw})(
            _x() if x is None else x, target=_y() if y is None else y
        )

    def ctor(**kw):
        return lambda m: PGD(m, **kw)

    def int_target(m):
        a = PGD(m, 0.3, steps=2).perturb(_x(), 1, generator=torch.Generator().manual_seed(0))
        b = PGD(m, 0.3, steps=2).perturb(
            _x(), torch.ones(N, dtype=torch.long), generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(a, b)

    def budget(m):
        for norm in ("l2", "linf"):
            adv = PGD(m, 0.3, steps=3, norm=norm)(_x(), target=_y())
            d = (adv - _x()).flatten(1)
            size = d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)
            assert bool((size <= 0.3 * (1 + 1e-6)).all())

    def bounds_respected(m):
        adv = PGD(m, 0.5, steps=3, norm="linf", bounds=(0.0, 1.0))(_x(), target=_y())
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0

    return [
        Case("epsilon 0", ctor(epsilon=0.0), ("raises", ValueError, "Expected `epsilon` to be a finite number > 0")),
        Case(
            "epsilon < 0",
            ctor(epsilon=-1.0),
            ("raises", ValueError, "`epsilon` to be a finite number > 0 but got -1.0"),
        ),
        Case("epsilon NaN", ctor(epsilon=float("nan")), ("raises", ValueError, "`epsilon` to be a finite number")),
        Case("epsilon inf", ctor(epsilon=float("inf")), ("raises", ValueError, "`epsilon` to be a finite number")),
        Case("epsilon str", ctor(epsilon="0.3"), ("raises", TypeError, "Expected `epsilon` to be a number")),
        Case("steps 0", ctor(epsilon=0.3, steps=0), ("raises", ValueError, "Expected `steps` to be >= 1 but got 0")),
        Case("steps -2", ctor(epsilon=0.3, steps=-2), ("raises", ValueError, "Expected `steps` to be >= 1")),
        Case("steps float", ctor(epsilon=0.3, steps=2.0), ("raises", TypeError, "Expected `steps` to be an int")),
        Case("steps bool", ctor(epsilon=0.3, steps=True), ("raises", TypeError, "Expected `steps` to be an int")),
        Case(
            "norm l1", ctor(epsilon=0.3, norm="l1"), ("raises", ValueError, "Expected `norm` to be one of 'l2', 'linf'")
        ),
        Case("step_size < 0", ctor(epsilon=0.3, step_size=-0.1), ("raises", ValueError, "Expected `step_size`")),
        Case("bounds reversed", ctor(epsilon=0.3, bounds=(1.0, 0.0)), ("raises", ValueError, "Expected `bounds`")),
        Case("bounds str", ctor(epsilon=0.3, bounds="01"), ("raises", TypeError, "Expected `bounds`")),
        Case("model not callable", lambda m: PGD(None, 0.3), ("raises", TypeError, "Expected `model` to be callable")),
        Case(
            "inputs outside bounds",
            perturb(x=_x() + 2, bounds=(0.0, 1.0)),
            ("raises", ValueError, "Expected `inputs` to lie within `bounds`"),
        ),
        Case("int64 inputs", perturb(x=_x().long()), ("raises", TypeError, "Expected `inputs` to be a floating point")),
        Case(
            "uint8 inputs", perturb(x=(_x() * 255).to(torch.uint8)), ("raises", TypeError, "`inputs` to be a floating")
        ),
        Case("bf16 inputs", perturb(x=_x(torch.bfloat16)), ("raises", TypeError, r"`inputs` to have the dtype")),
        Case("f16 inputs", perturb(x=_x(torch.float16)), ("raises", TypeError, r"`inputs` to have the dtype")),
        Case("NaN inputs", perturb(x=_nan_x()), ("raises", ValueError, "Expected `inputs` to hold finite values")),
        Case("inf inputs", perturb(x=_inf_x()), ("raises", ValueError, "Expected `inputs` to hold finite values")),
        Case(
            "empty batch", perturb(x=_x(n=0), y=_y(0)), ("raises", ValueError, "`inputs` to hold at least one example")
        ),
        Case("list inputs", perturb(x=[1.0, 2.0]), ("raises", TypeError, "Expected `inputs` to be a torch.Tensor")),
        Case("target None", lambda m: PGD(m, 0.3)(_x(), target=None), ("raises", ValueError, "Expected `target`")),
        Case(
            "float target", perturb(y=_y().float()), ("raises", TypeError, "Expected `target` to hold integer labels")
        ),
        Case("short target", perturb(y=_y(2)), ("raises", ValueError, r"Expected `target` to have shape \(4,\)")),
        Case(
            "target >= C", perturb(y=torch.tensor([0, 5, 1, 2])), ("raises", ValueError, r"`target` labels in \[0, 3\)")
        ),
        Case(
            "negative target",
            perturb(y=torch.tensor([0, -1, 1, 2])),
            ("raises", ValueError, r"`target` labels in \[0, 3\)"),
        ),
        Case("int target broadcast", int_target, ("answer",)),
        Case("budget per example", budget, ("answer",)),
        Case("bounds kept", bounds_respected, ("answer",)),
    ]


def _smoothing_cases() -> list[Case]:
    def cls(**kw):
        return lambda m: SmoothedClassifier(m, **{"sigma": 0.25, "num_classes": C, **kw})

    def certify(x=None, model=None, **kw):
        def run(m):
            sc = SmoothedClassifier(model or m, sigma=0.25, num_classes=C, batch_size=64)
            return sc.certify(_x() if x is None else x, **{"n0": 8, "n": 32, "alpha": 0.01, **kw})

        return run

    def nan_model(x):
        return torch.full((x.shape[0], C), float("nan"))

    def counts_sum(m):
        sc = SmoothedClassifier(m, sigma=0.25, num_classes=C, batch_size=7)
        cert = sc.certify(_x(), n0=8, n=32, alpha=0.01, generator=torch.Generator().manual_seed(0))
        assert cert.counts.sum(1).tolist() == [32] * N
        assert bool(((cert.prediction == -1) == (cert.radius == 0)).all())

    return [
        Case("sigma 0", cls(sigma=0.0), ("raises", ValueError, "Expected `sigma` to be a finite number > 0")),
        Case("sigma NaN", cls(sigma=float("nan")), ("raises", ValueError, "Expected `sigma` to be a finite number")),
        Case("num_classes 1", cls(num_classes=1), ("raises", ValueError, "Expected `num_classes` to be >= 2")),
        Case("num_classes float", cls(num_classes=3.0), ("raises", TypeError, "Expected `num_classes` to be an int")),
        Case("batch_size 0", cls(batch_size=0), ("raises", ValueError, "Expected `batch_size` to be >= 1 but got 0")),
        Case("batch_size -3", cls(batch_size=-3), ("raises", ValueError, "Expected `batch_size` to be >= 1")),
        Case(
            "model not callable",
            lambda m: SmoothedClassifier(1, 0.25, C),
            ("raises", TypeError, "Expected `model` to be callable but got int"),
        ),
        Case("n0 0", certify(n0=0), ("raises", ValueError, "Expected `n0` to be >= 1 but got 0")),
        Case("n -5", certify(n=-5), ("raises", ValueError, "Expected `n` to be >= 1 but got -5")),
        Case("n float", certify(n=32.0), ("raises", TypeError, "Expected `n` to be an int")),
        Case("alpha 0", certify(alpha=0.0), ("raises", ValueError, "Expected `alpha`")),
        Case("alpha 1", certify(alpha=1.0), ("raises", ValueError, r"Expected `alpha` to be in \(0, 1\)")),
        Case("alpha NaN", certify(alpha=float("nan")), ("raises", ValueError, "Expected `alpha`")),
        Case("int64 inputs", certify(x=_x().long()), ("raises", TypeError, "Expected `inputs` to be a floating point")),
        Case(
            "uint8 inputs", certify(x=(_x() * 255).to(torch.uint8)), ("raises", TypeError, "`inputs` to be a floating")
        ),
        Case("bf16 inputs", certify(x=_x(torch.bfloat16)), ("raises", TypeError, "`inputs` to have the dtype")),
        Case(
            "list inputs", certify(x=[[0.0] * 36] * N), ("raises", TypeError, "Expected `inputs` to be a torch.Tensor")
        ),
        Case("NaN inputs", certify(x=_nan_x()), ("raises", ValueError, "Expected `inputs` to hold finite values")),
        Case("empty batch", certify(x=_x(n=0)), ("raises", ValueError, "`inputs` to hold at least one example")),
        Case(
            "NaN logits", certify(model=nan_model), ("raises", ValueError, "Expected `model` to return finite logits")
        ),
        Case(
            "wrong logits",
            certify(model=lambda x: torch.zeros(x.shape[0], C + 1)),
            ("raises", ValueError, r"`model` to return logits of shape \(32, 3\) but got \(32, 4\)"),
        ),
        Case(
            "predict NaN logits",
            lambda m: SmoothedClassifier(nan_model, 0.25, C).predict(_x(), 16, 0.01),
            ("raises", ValueError, "finite logits"),
        ),
        Case("counts and abstentions", counts_sum, ("answer",)),
    ]


class _Stream(IterableDataset):
    def __iter__(self):
        yield from zip(_x(), _y())


class _Dicts(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"x": _x()[i], "y": _y()[i]}


def _fit_cases() -> list[Case]:
    data = TensorDataset(_x(), _y())
    loader = DataLoader(data, batch_size=2)

    def run(loss=None, train_loader=loader, **kw):
        return lambda m: fit(m, loss or StandardLoss(), train_loader, **{"epochs": 1, "quiet": True, **kw})

    def nan_loss(model, x, y):
        return StandardLoss()(model, x, y) * float("nan")

    def vector_loss(model, x, y):
        return F.cross_entropy(model(x), y, reduction="none")

    def zero_epochs_left(m):
        # the model is trained in place (that is what fit is for), so a copy trains
        twin = copy.deepcopy(m)
        history = fit(twin, StandardLoss(), loader, epochs=1, eval_loader=loader, quiet=True)
        assert history.global_step == 2 and 0.0 <= history.epochs[0]["eval_accuracy"] <= 1.0

    empty = DataLoader(TensorDataset(_x(n=0), _y(0)), batch_size=2)
    return [
        Case("epochs 0", run(epochs=0), ("raises", ValueError, "Expected `epochs` to be >= 1 but got 0")),
        Case("epochs -1", run(epochs=-1), ("raises", ValueError, "Expected `epochs` to be >= 1")),
        Case("epochs float", run(epochs=1.0), ("raises", TypeError, "Expected `epochs` to be an int")),
        Case("seed -1", run(seed=-1), ("raises", ValueError, "Expected `seed` to be >= 0")),
        Case("seed str", run(seed="0"), ("raises", TypeError, "Expected `seed` to be an int")),
        Case(
            "checkpoint_every 0",
            run(checkpoint_every=0),
            ("raises", ValueError, "Expected `checkpoint_every` to be >= 1"),
        ),
        Case(
            "resume without dir",
            run(resume=True),
            ("raises", ValueError, "Expected `checkpoint_dir` when `resume=True`"),
        ),
        Case(
            "empty loader",
            run(train_loader=empty),
            ("raises", ValueError, "Expected `train_loader` to hold at least one example"),
        ),
        Case(
            "no batch per epoch",
            run(train_loader=DataLoader(data, batch_size=8, drop_last=True)),
            ("raises", ValueError, "`train_loader` to yield at least one batch"),
        ),
        Case(
            "list loader",
            run(train_loader=[(_x(), _y())]),
            ("raises", TypeError, "Expected `train_loader` to be a torch DataLoader"),
        ),
        Case(
            "iterable dataset",
            run(train_loader=DataLoader(_Stream(), batch_size=2)),
            ("raises", ValueError, "Expected `train_loader` over a map-style"),
        ),
        Case(
            "dict batches",
            run(train_loader=DataLoader(_Dicts(), batch_size=2)),
            ("raises", TypeError, r"\(inputs, targets\) tensor pairs"),
        ),
        Case(
            "eval_loader list",
            run(eval_loader=[1]),
            ("raises", TypeError, "Expected `eval_loader` to be a torch DataLoader"),
        ),
        Case("eval_fn not callable", run(eval_fn=3), ("raises", TypeError, "Expected `eval_fn` to be callable")),
        Case("loss not callable", run(loss="ce"), ("raises", TypeError, "Expected `loss` to be callable")),
        Case(
            "model not a module",
            lambda m: fit(lambda x: x, StandardLoss(), loader, epochs=1),
            ("raises", TypeError, "Expected `model` to be a torch.nn.Module"),
        ),
        Case(
            "NaN loss",
            run(loss=nan_loss),
            ("raises", FloatingPointError, "finite training loss but got nan at epoch 1, step 1"),
        ),
        Case(
            "vector loss",
            run(loss=vector_loss),
            ("raises", ValueError, r"Expected `loss` to return a scalar tensor but got \(2,\)"),
        ),
        Case(
            "float labels",
            run(train_loader=DataLoader(TensorDataset(_x(), _y().float()), batch_size=2)),
            ("raises", TypeError, "Expected `targets` to hold integer"),
        ),
        Case(
            "int inputs",
            run(train_loader=DataLoader(TensorDataset(_x().long(), _y()), batch_size=2)),
            ("raises", TypeError, "`inputs` to be a floating point"),
        ),
        Case(
            "float eval labels",
            run(eval_loader=DataLoader(TensorDataset(_x(), _y().float()), batch_size=2)),
            ("raises", TypeError, "Expected `eval_loader` to yield"),
        ),
        Case(
            "empty eval loader",
            run(eval_loader=DataLoader(TensorDataset(_x(n=0), _y(0)), batch_size=2)),
            ("raises", ValueError, "Expected `eval_loader` to yield at least one example"),
        ),
        Case("a copy trains", zero_epochs_left, ("answer",)),
    ]


ALL_CASES = (
    [(f"loss[{name}] {c.name}", c) for name in LOSSES for c in _loss_cases(name)]
    + [(f"pgd {c.name}", c) for c in _pgd_cases()]
    + [(f"smoothing {c.name}", c) for c in _smoothing_cases()]
    + [(f"fit {c.name}", c) for c in _fit_cases()]
)


@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("name", "case"), ALL_CASES, ids=[n for n, _ in ALL_CASES])
def test_bad_input_matrix(name, case, train_mode):
    torch.manual_seed(0)
    model = Net().train(train_mode)
    model(_x())  # non-trivial BatchNorm statistics (in train mode) before the call
    model.zero_grad()
    model.net[1].weight.grad = torch.full_like(model.net[1].weight, 0.5)  # a stale gradient that must survive
    model.register_forward_hook(lambda *a: None)
    before = _state(model)
    kind = case.expect[0]
    if kind == "raises":
        _, error, match = case.expect
        with pytest.raises(error, match=match):
            case.call(model)
    elif kind == "warns":
        _, warning, match = case.expect
        with pytest.warns(warning, match=match):
            case.call(model)
    else:
        case.call(model)
    _assert_same_state(model, before, buffers=not (case.trains and train_mode))


def test_case_counts():
    kinds = [c.expect[0] for _, c in ALL_CASES]
    # reported in the changelog: every case is refused with a named argument or answered exactly
    assert len(kinds) == kinds.count("raises") + kinds.count("warns") + kinds.count("answer")
    assert kinds.count("raises") > 150 and kinds.count("answer") >= 20
