"""Row-wise similarity measures of two batches of maps: cosine, Pearson, LPIPS and SSIM.

LPIPS comes from the ``lpips`` package (Zhang et al., CVPR 2018) and SSIM from
``pytorch-msssim`` (Wang et al., 2004): kept libraries, called the way Srinivas, Bordt & Lakkaraju
(NeurIPS 2023) prepare gradient and score maps (each scaled by its largest absolute value, grey
maps repeated to three channels, values in :math:`[-1, 1]`). Only cosine needs hand-written code:
a row-wise float64 fallback that neither under- nor overflows.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import _scale_rows

__all__ = ["METHODS", "Method", "lpips_weights_path"]

Method = Literal["cosine", "pearson", "lpips", "ssim"]
#: The similarity measures of :func:`~captum_pags.metrics.score_alignment`.
METHODS: tuple[str, ...] = ("cosine", "pearson", "lpips", "ssim")
#: Shorter map sides are upsampled to at least this many pixels for LPIPS (AlexNet needs >= 31).
LPIPS_MIN_SIZE = 32
#: Side of SSIM's Gaussian window (pytorch-msssim's default, as in Wang et al. 2004).
SSIM_WINDOW = 11
_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1, as lpips loads it


# ---------------------------------------------------------------------------------------- cosine / Pearson
def _cosine_rows(a: Tensor, b: Tensor, center: bool) -> Tensor:
    """Row-wise cosine (Pearson if ``center``) of ``(N, D)`` matrices; NaN where either row is zero."""
    out_dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    b = b.to(device=a.device)
    if not center:
        # fast path in the maps' own precision; rows whose norms under- or overflow are redone below
        a_, b_ = a.to(out_dtype), b.to(out_dtype)
        norms = torch.linalg.vector_norm(a_, dim=1) * torch.linalg.vector_norm(b_, dim=1)
        cos = (a_ * b_).sum(1) / norms
        redo = ~torch.isfinite(cos) | ~(norms > torch.finfo(out_dtype).tiny ** 0.5)
        if bool(redo.any()):
            cos[redo] = _cosine_rows_safe(a[redo], b[redo], False).to(out_dtype)
        return cos.clamp(-1.0, 1.0)  # rounding can step past +-1; NaN stays NaN
    return _cosine_rows_safe(a, b, center).to(out_dtype)


def _cosine_rows_safe(a: Tensor, b: Tensor, center: bool) -> Tensor:
    """Float64 cosine without under- or overflow (float64 rows are scaled first); NaN for zero rows."""
    if torch.float64 in (a.dtype, b.dtype):
        a, b = _scale_rows(a.double()), _scale_rows(b.double())
    else:
        # float64 holds the square of any lower-precision value
        a, b = a.double(), b.double()
    if center:
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    cos = (a * b).sum(1) / (torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1))
    return cos.clamp(-1.0, 1.0)


# ---------------------------------------------------------------------------------------- image measures
def _peak_scaled(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Maps divided by their largest absolute value (in [-1, 1]) and whether that value was > 0."""
    peak = maps.flatten(1).abs().amax(1)
    view = (maps.shape[0],) + (1,) * (maps.dim() - 1)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak)).reshape(view), peak > 0


def lpips_input(maps: Tensor) -> Tensor:
    """Maps prepared for LPIPS as the paper does: max-abs scaled, grey to RGB, small maps upsampled.

    ``(N, C, H, W)`` maps with ``C`` in {1, 3} become ``(N, 3, H', W')`` in :math:`[-1, 1]`. When
    the shorter side is below :data:`LPIPS_MIN_SIZE` (AlexNet's features need about 31 pixels),
    both sides are upsampled bilinearly by the smallest integer factor that reaches it (16x16
    digits become 32x32).
    """
    scaled, _ = _peak_scaled(maps)
    if scaled.shape[1] == 1:
        scaled = scaled.expand(-1, 3, -1, -1)
    side = min(scaled.shape[2], scaled.shape[3])
    if side < LPIPS_MIN_SIZE:
        factor = math.ceil(LPIPS_MIN_SIZE / side)
        scaled = F.interpolate(scaled, scale_factor=factor, mode="bilinear", align_corners=False)
    return scaled


def _lpips_rows(a: Tensor, s: Tensor, net: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``1 - LPIPS`` of paper-prepared maps; NaN where either map is all zero."""
    n = a.shape[0]
    _, ok_a = _peak_scaled(a)
    _, ok_s = _peak_scaled(s)
    out = net(lpips_input(a), lpips_input(s))
    if not isinstance(out, Tensor) or out.numel() != n:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"Expected `lpips_net` to return one distance per example ({n} values) but got {got}")
    out = 1.0 - out.reshape(n).to(a.dtype)
    return torch.where(ok_a & ok_s, out, torch.full_like(out, math.nan))


def _ssim_rows(a: Tensor, s: Tensor) -> Tensor:
    """SSIM (pytorch-msssim, 11-pixel Gaussian window) of max-abs-scaled maps; NaN for all-zero maps."""
    from pytorch_msssim import ssim

    a_scaled, ok_a = _peak_scaled(a)
    s_scaled, ok_s = _peak_scaled(s)
    # maps lie in [-1, 1], a data range of 2 (callers promote them to float32 or float64 first)
    out = ssim(a_scaled, s_scaled, data_range=2.0, size_average=False, win_size=SSIM_WINDOW)
    return torch.where(ok_a & ok_s, out, torch.full_like(out, math.nan))


# ---------------------------------------------------------------------------------------- default LPIPS
def lpips_weights_path() -> str:
    """Where ``lpips`` (through torchvision) reads AlexNet's ImageNet weights: the torch hub cache.

    ``os.path.join(torch.hub.get_dir(), "checkpoints", "alexnet-owt-7be5be79.pth")``; set
    ``TORCH_HOME`` to move it.

    Examples
    --------
    >>> lpips_weights_path().endswith(os.path.join("checkpoints", "alexnet-owt-7be5be79.pth"))
    True
    """
    return os.path.join(torch.hub.get_dir(), "checkpoints", _ALEXNET_FILE)


def default_lpips_net(device: torch.device | str = "cpu") -> Callable[[Tensor, Tensor], Tensor]:
    """The paper's LPIPS: ``lpips.LPIPS(net="alex")`` with AlexNet weights from the torch hub cache.

    Never downloads: without the weights file one :class:`FileNotFoundError` names the cache folder.
    The network is built once per process, weights path and device.
    """
    try:
        import lpips  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "method='lpips' needs the `lpips` package: pip install 'captum-pags[lpips]' (or pass `lpips_net`)"
        ) from err
    path = lpips_weights_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"method='lpips' builds the paper's AlexNet LPIPS from torchvision's AlexNet weights {_ALEXNET_FILE}, "
            f"which are not in the torch hub cache folder {os.path.dirname(path)}; captum_pags never downloads "
            "weights. Copy the file there (or point TORCH_HOME at a cache that has it), or pass `lpips_net`."
        )
    return _build_lpips(path, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _build_lpips(path: str, device: str) -> torch.nn.Module:
    import lpips

    # lpips prints a line and torchvision warns about the legacy `pretrained` flag; neither is the user's concern
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", verbose=False)
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return net
