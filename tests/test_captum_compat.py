import pytest
import torch
from torch import nn

from captum_pags._kernel._captum_compat import expand_forward_args, expand_target, format_output, run_forward


def test_run_forward_selects_targets_like_captum():
    model = nn.Linear(3, 4)
    x = torch.randn(5, 3)
    full = model(x)
    torch.testing.assert_close(run_forward(model, (x,), 2), full[:, 2])
    t = torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(run_forward(model, (x,), t), full.gather(1, t[:, None])[:, 0])
    torch.testing.assert_close(run_forward(model, (x,), [3, 3, 3, 3, 3]), full[:, 3])
    torch.testing.assert_close(run_forward(lambda a, s: a * s, (x,), None, 2.0), x * 2)


def test_run_forward_turns_captum_assertions_into_value_errors():
    with pytest.raises(ValueError, match="`target`"):
        run_forward(nn.Linear(3, 4), (torch.randn(5, 3),), [0, 1])

    def failing_model(x):
        raise AssertionError("the model's own check")

    with pytest.raises(AssertionError, match="the model's own check"):  # not mistaken for a bad target
        run_forward(failing_model, (torch.randn(2, 3),), 0)
    with pytest.raises(TypeError, match="`forward_func` to return a torch.Tensor"):
        run_forward(lambda a: (a,), (torch.randn(2, 3),))


def test_format_and_expand():
    t = torch.ones(2)
    assert format_output(False, (t,)) is t
    assert format_output(True, (t,)) == (t,)
    assert expand_target([1, 2], 2) == [1, 2, 1, 2]
    assert expand_target([1, 2], 2, interleave=True) == [1, 1, 2, 2]
    assert torch.equal(expand_target(torch.tensor([1, 2]), 2), torch.tensor([1, 2, 1, 2]))
    args = expand_forward_args((torch.tensor([[1.0], [2.0]]), "keep"), 2, interleave=True)
    assert torch.equal(args[0], torch.tensor([[1.0], [1.0], [2.0], [2.0]])) and args[1] == "keep"
    assert expand_forward_args(None, 3) is None


def test_only_the_compat_module_imports_captum_private_modules():
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "captum_pags"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "_captum_compat.py" and "captum._" in path.read_text()
    ]
    assert offenders == []
