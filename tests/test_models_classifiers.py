import pytest
import torch

from captum_pags.models import MLP, SmallCNN


@pytest.mark.parametrize("make", [lambda a: MLP(activation=a), lambda a: SmallCNN(width=4, activation=a)])
@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_reference_classifiers_shapes_and_second_derivatives(make, activation):
    model = make(activation).double()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    logits = model(x)
    assert logits.shape == (3, 10)
    (g,) = torch.autograd.grad(logits[:, 0].sum(), x, create_graph=True)
    (h,) = torch.autograd.grad((g**2).sum(), x)
    # softplus networks have curvature (double backprop sees it); piecewise-linear ReLU ones have none
    assert (h.abs().max() > 0) == (activation == "softplus")
    # examples are independent: the logits of one example do not depend on the others
    torch.testing.assert_close(model(x[:1]), logits[:1], rtol=1e-12, atol=1e-12)


def test_mlp_layers_follow_the_widths():
    model = MLP(input_shape=(2, 3), hidden=(5, 4), num_classes=3)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 5), (5, 4), (4, 3)]
    assert MLP(input_shape=(4,), hidden=(), num_classes=2)(torch.zeros(1, 4)).shape == (1, 2)


def test_classifier_bad_input():
    with pytest.raises(ValueError, match="Expected `activation` to be one of 'softplus', 'relu' but got 'tanh'"):
        MLP(activation="tanh")
    with pytest.raises(ValueError, match="Expected `num_classes` to be >= 1 but got 0"):
        SmallCNN(num_classes=0)
    with pytest.raises(ValueError, match="Expected `hidden` to be >= 1 but got 0"):
        MLP(hidden=(0,))


@pytest.mark.parametrize("size", [7, 8, 16, 28])
def test_small_cnn_input_sizes(size):
    assert SmallCNN(in_channels=3, width=2, input_size=size)(torch.zeros(2, 3, size, size)).shape == (2, 10)
