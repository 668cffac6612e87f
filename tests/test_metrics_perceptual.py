"""LPIPS (the paper's metric) and SSIM alignment, against the kept libraries and a float64 SSIM."""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_model_unchanged, model_snapshot
from torch import nn

from captum_pags.metrics import AlignmentAccumulator, score_alignment
from captum_pags.metrics.similarity import lpips_weights_path

lpips = pytest.importorskip("lpips")


def _paper_input(maps: torch.Tensor, factor: int) -> torch.Tensor:
    """Written out: max-abs scaling, grey to RGB, bilinear upsampling by ``factor``."""
    scaled = maps / maps.flatten(1).abs().amax(1).reshape(-1, 1, 1, 1)
    if scaled.shape[1] == 1:
        scaled = scaled.repeat(1, 3, 1, 1)
    if factor > 1:
        scaled = F.interpolate(scaled, scale_factor=factor, mode="bilinear", align_corners=False)
    return scaled


def _random_lpips(seed: int):
    torch.manual_seed(seed)
    return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)


class ToyLPIPS(nn.Module):
    """LPIPS-shaped: conv features of both images, normalised over channels, mean squared difference."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5))
        self.calls = []

    def forward(self, x0, x1):
        self.calls.append((x0.detach().clone(), x1.detach().clone()))
        f0, f1 = (nn.functional.normalize(self.features(x), dim=1) for x in (x0, x1))
        return ((f0 - f1) ** 2).sum(1).mean((1, 2)).reshape(-1, 1, 1, 1)


# ------------------------------------------------------------------------------------ LPIPS
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lpips_equals_the_package_called_directly_on_paper_inputs(seed):
    """Random AlexNet backbone (pnet_rand), the linear layers that ship inside lpips."""
    net = _random_lpips(seed)
    gen = torch.Generator().manual_seed(seed)
    for shape, factor in (((4, 1, 16, 16), 2), ((3, 3, 32, 32), 1), ((2, 1, 12, 20), 3)):
        a, s = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = 1 - net(_paper_input(a, factor), _paper_input(s, factor)).reshape(-1)
        got = score_alignment(a, s, "lpips", lpips_net=net, max_examples_per_batch=2)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # 1 - LPIPS: identical maps give exactly 1, scaling a map changes nothing
        torch.testing.assert_close(score_alignment(a, a, "lpips", lpips_net=net), torch.ones(shape[0]))
        torch.testing.assert_close(score_alignment(5 * a, s, "lpips", lpips_net=net), got, rtol=1e-5, atol=1e-6)


def test_lpips_network_is_evaluated_in_eval_mode_and_restored():
    net = ToyLPIPS().train()
    before = model_snapshot(net)
    a, s = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    out = score_alignment(a, s, "lpips", lpips_net=net, max_examples_per_batch=2)
    assert_model_unchanged(net, before)
    assert out.shape == (5,) and len(net.calls) == 3
    x0, _ = net.calls[0]
    torch.testing.assert_close(x0, _paper_input(a[:2], 4))  # 8 px -> 32 px
    torch.testing.assert_close(score_alignment(a, s, "lpips", lpips_net=net), out)  # eval mode: deterministic
    with pytest.warns(RuntimeWarning, match="1 of 5"):
        z = score_alignment(a * torch.tensor([0.0, 1, 1, 1, 1])[:, None, None, None], s, "lpips", lpips_net=net)
    assert torch.isnan(z[0]) and not torch.isnan(z[1:]).any()


def _fake_alexnet_cache(folder, seed: int) -> dict:
    import torchvision

    torch.manual_seed(seed)
    state = torchvision.models.alexnet(weights=None).state_dict()
    os.makedirs(folder / "checkpoints", exist_ok=True)
    torch.save(state, folder / "checkpoints" / "alexnet-owt-7be5be79.pth")
    return state


def test_default_lpips_is_the_papers_alexnet_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    a, s = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "checkpoints")) as info:
        score_alignment(a, s, "lpips")
    assert "never downloads" in str(info.value) and "lpips_net" in str(info.value)
    with pytest.raises(FileNotFoundError, match="torch hub cache"):
        AlignmentAccumulator("lpips")

    state = _fake_alexnet_cache(tmp_path, seed=3)
    assert lpips_weights_path() == str(tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    reference.net.load_state_dict(_slices(state))
    with torch.no_grad():
        expected = 1 - reference(_paper_input(a, 2), _paper_input(s, 2)).reshape(-1)
    torch.testing.assert_close(score_alignment(a, s, "lpips"), expected, rtol=1e-5, atol=1e-6)


def _slices(state: dict) -> dict:
    """torchvision AlexNet ``features.i`` weights under lpips' ``sliceK.i`` names."""
    bounds = [(1, 0, 2), (2, 2, 5), (3, 5, 8), (4, 8, 10), (5, 10, 12)]
    out = {}
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        index, name = key.split(".")[1:]
        for k, lo, hi in bounds:
            if lo <= int(index) < hi:
                out[f"slice{k}.{index}.{name}"] = value
    return out


def test_lpips_errors_are_clear():
    a = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match="`lpips_net` only with method='lpips'"):
        score_alignment(a, a, lpips_net=ToyLPIPS())
    with pytest.raises(TypeError, match="`lpips_net` to be callable"):
        score_alignment(a, a, "lpips", lpips_net=3)
    with pytest.raises(ValueError, match=r"one \(N, C, H, W\) tensor with C in \{1, 3\}"):
        score_alignment((a, a), (a, a), "lpips", lpips_net=ToyLPIPS())
    with pytest.raises(ValueError, match=r"C in \{1, 3\}"):
        score_alignment(torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8), "lpips", lpips_net=ToyLPIPS())
    with pytest.raises(ValueError, match="one distance per example"):
        score_alignment(a, a, "lpips", lpips_net=lambda x, y: torch.zeros(3))


# ------------------------------------------------------------------------------------ SSIM
def _ssim_float64(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Wang et al. (2004) SSIM, written out: Gaussian-weighted local statistics on valid windows."""
    x = x.double() / x.flatten(1).abs().amax(1).reshape(-1, 1, 1, 1)
    y = y.double() / y.flatten(1).abs().amax(1).reshape(-1, 1, 1, 1)
    r = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w2 = torch.outer(g, g) / torch.outer(g, g).sum()
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    n, c, h, wd = x.shape
    out = torch.zeros(n, dtype=torch.float64)
    for i in range(n):
        per_channel = []
        for ch in range(c):
            vals = []
            for top in range(h - window + 1):
                for left in range(wd - window + 1):
                    px = x[i, ch, top : top + window, left : left + window]
                    py = y[i, ch, top : top + window, left : left + window]
                    mx, my = (w2 * px).sum(), (w2 * py).sum()
                    vx = (w2 * px * px).sum() - mx**2
                    vy = (w2 * py * py).sum() - my**2
                    cxy = (w2 * px * py).sum() - mx * my
                    vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
            per_channel.append(torch.stack(vals).mean())
        out[i] = torch.stack(per_channel).mean()
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_a_float64_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 1, 14, 13, generator=gen, dtype=torch.float64)
    s = a + 0.7 * torch.randn(3, 1, 14, 13, generator=gen, dtype=torch.float64)
    got = score_alignment(a, s, "ssim")
    # pytorch-msssim builds its Gaussian window in float32: agreement to ~1e-8, not to float64 rounding
    torch.testing.assert_close(got, _ssim_float64(a, s), rtol=1e-6, atol=1e-7)
    rgb = torch.randn(2, 3, 12, 12, generator=gen)
    torch.testing.assert_close(
        score_alignment(rgb, -rgb * 2, "ssim").double(), _ssim_float64(rgb, -rgb), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(score_alignment(a, a * 3, "ssim"), torch.ones(3, dtype=torch.float64))


def test_ssim_undefined_and_refused_maps():
    a = torch.randn(3, 1, 16, 16)
    with pytest.warns(RuntimeWarning, match="1 of 3"):
        out = score_alignment(a * torch.tensor([1.0, 0, 1])[:, None, None, None], a, "ssim")
    assert torch.isnan(out[1]) and not torch.isnan(out[[0, 2]]).any()
    with pytest.raises(ValueError, match=r"at least 11x11 pixels for method='ssim'"):
        score_alignment(torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), "ssim")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        score_alignment(torch.randn(2, 256), torch.randn(2, 256), "ssim")
    ints = torch.randint(-5, 5, (2, 1, 12, 12))
    torch.testing.assert_close(
        score_alignment(ints, ints.float() + 0.5, "ssim"), score_alignment(ints.float(), ints.float() + 0.5, "ssim")
    )


def test_accumulator_with_ssim_equals_the_function():
    a, s = torch.randn(7, 1, 16, 16), torch.randn(7, 1, 16, 16)
    acc = AlignmentAccumulator("ssim")
    acc.update(a[:3], s[:3])
    acc.update(a[3:], s[3:])
    full = score_alignment(a, s, "ssim").double()
    torch.testing.assert_close(acc.compute().mean, full.mean(), rtol=1e-12, atol=1e-12)
    assert not math.isnan(float(acc.compute().std))
