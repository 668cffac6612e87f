import matplotlib
import numpy as np
import pytest
import torch

from captum_pags.viz import attribution_grid, to_captum_image, visualize_attribution

matplotlib.use("Agg")


def test_channel_last_layout():
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    out = to_captum_image(a)
    assert out.shape == (2, 4, 5, 3)
    assert out[1, 2, 3, 0] == a[1, 0, 2, 3].item()
    with pytest.raises(ValueError, match="`attributions` to have shape"):
        to_captum_image(torch.zeros(4, 5))


@pytest.mark.parametrize("sign", ["all", "absolute_value", "positive"])
def test_visualize_with_captum_including_all_zero_maps(sign):
    import matplotlib.pyplot as plt

    fig, ax = visualize_attribution(torch.randn(1, 8, 8), sign=sign, use_pyplot=False)
    assert fig is not None
    fig, ax = visualize_attribution(torch.zeros(1, 8, 8), torch.rand(1, 8, 8), sign=sign, use_pyplot=False)
    assert "all zero" in ax.get_title()
    plt.close("all")


def test_grid_normalises_each_map_and_tolerates_zeros():
    fig = attribution_grid([torch.randn(3, 1, 8, 8), torch.zeros(3, 1, 8, 8)], ["grad", "zero"])
    images = [ax.get_images()[0].get_array() for ax in fig.axes]
    assert all(np.isfinite(np.asarray(im)).all() for im in images)
    assert np.isclose(np.abs(np.asarray(images[0])).max(), 1.0)
    with pytest.raises(ValueError, match="`row_titles`"):
        attribution_grid([torch.zeros(2, 1, 4, 4)], ["a", "b"])
