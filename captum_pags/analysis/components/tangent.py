"""Tangent-space specifications: ``exact``, ``pca:K``, ``local-pca:K[:FILE]``, ``decoder:PATH``, ``denoiser:K``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import AnalysisInputError
from .data import DataSource
from .embedded import EmbeddedData

__all__ = ["TANGENT_KINDS", "TangentSpec"]

#: The tangent-space kinds ``--tangent`` takes, with what each needs.
TANGENT_KINDS: dict[str, str] = {
    "exact": "the known manifold of embedded data (digits16, shapes32)",
    "pca": "pca:K, the K leading principal directions of the reference set",
    "local-pca": "local-pca:K[:FILE], PCA of each point's nearest reference points",
    "decoder": "decoder:PATH, the decoder Jacobian of an autoencoder (a diffusers AutoencoderKL folder, a "
    "TorchScript file with encode/decode, or 'shipped' for digits16 and shapes32)",
    "denoiser": "denoiser:K, the K leading directions of the unconditional score's Jacobian at the noise level",
}

#: Reference points used by ``pca`` and ``local-pca`` at most (memory stays bounded).
MAX_REFERENCE = 2000


@dataclass(frozen=True)
class TangentSpec:
    """Which tangent space to measure on, as a plain config.

    Attributes
    ----------
    kind : str
        A key of :data:`TANGENT_KINDS`.
    dim : int, optional
        ``K`` of ``pca``, ``local-pca`` and ``denoiser``.
    path : str, optional
        The autoencoder of ``decoder``, or the reference file of ``local-pca``.

    Examples
    --------
    >>> spec = TangentSpec("pca", dim=8)
    >>> spec.to_string(), TangentSpec.from_config(spec.to_config()) == spec
    ('pca:8', True)
    """

    kind: str
    dim: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TANGENT_KINDS:
            raise AnalysisInputError(f"Expected a tangent space among {sorted(TANGENT_KINDS)} but got {self.kind!r}")
        needs_dim = self.kind in ("pca", "local-pca", "denoiser")
        if needs_dim and (isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1):
            raise AnalysisInputError(f"Expected `{self.kind}:K` with an integer K >= 1 but got K={self.dim!r}")
        if self.kind == "decoder" and not self.path:
            raise AnalysisInputError("Expected `decoder:PATH` with the autoencoder's path")

    def to_string(self) -> str:
        """The ``--tangent`` text of this spec."""
        parts = [self.kind] + ([str(self.dim)] if self.dim is not None else []) + ([self.path] if self.path else [])
        return ":".join(parts)

    def to_config(self) -> dict[str, Any]:
        """Plain settings; :meth:`from_config` rebuilds the spec."""
        return {"kind": self.kind, "dim": self.dim, "path": self.path}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TangentSpec:
        """Rebuild a spec from :meth:`to_config`'s dict."""
        return cls(**config)

    # ------------------------------------------------------------------ checks and construction
    def check(self, data: DataSource, scores: Any = None, *, score_given: bool = False) -> None:
        """Refuse a spec that cannot work with ``data`` (and the score models) before any work."""
        d = 1
        for s in data.shape:
            d *= int(s)
        if self.dim is not None and self.dim >= d:
            raise AnalysisInputError(f"Expected K < D = {d} (features per example) in --tangent {self.to_string()}")
        if self.kind == "exact":
            if not isinstance(data, EmbeddedData) or data.spec.exact_tangent is None:
                raise AnalysisInputError(
                    "--tangent exact needs embedded data with a known manifold (--data digits16); for your data use "
                    "pca:K, local-pca:K, decoder:PATH or denoiser:K"
                )
        if self.kind == "local-pca" and self.path is not None and not Path(self.path).is_file():
            raise AnalysisInputError(f"reference file {self.path!r} of --tangent {self.to_string()} does not exist")
        if self.kind == "decoder" and self.path != "shipped" and not Path(str(self.path)).exists():
            raise AnalysisInputError(f"autoencoder {self.path!r} of --tangent {self.to_string()} does not exist")
        if self.kind == "decoder" and self.path == "shipped" and tuple(data.shape) not in ((1, 16, 16), (3, 32, 32)):
            raise AnalysisInputError(
                "--tangent decoder:shipped is the digits16 or shapes32 autoencoder; it takes 1x16x16 or 3x32x32 images"
            )
        if self.kind == "denoiser" and scores is not None and not scores.has_unconditional:
            raise AnalysisInputError(
                "--tangent denoiser:K needs an unconditional score (a model with a null label, or "
                "--unconditional-score-model)"
            )
        if self.kind == "denoiser" and scores is None and not score_given:
            raise AnalysisInputError("--tangent denoiser:K needs a score model (give --score-model)")

    def reference_points(self, data: DataSource, max_examples: int | None) -> Tensor:
        """The reference set of ``pca`` / ``local-pca``: a file, the training split, else the analysed data."""
        if self.path is not None:
            from .data import ArrayFileData

            ref = ArrayFileData(self.path, data.data_range)
            return torch.cat([x for x, _ in ref.batches(256, MAX_REFERENCE)])
        ref_t = data.reference(MAX_REFERENCE)
        if ref_t is not None:
            return ref_t
        n = min(MAX_REFERENCE, data.count(max_examples))
        return torch.cat([x for x, _ in data.batches(256, n)])

    def build(
        self,
        data: DataSource,
        *,
        scores: Any = None,
        sigma: float = 0.3,
        max_examples: int | None = None,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> tuple[Any, str]:
        """The :class:`~captum_pags.manifold.TangentSpace` and a sentence saying what it is."""
        from ...manifold import DenoiserTangent, LinearSubspace, LocalPCATangent

        self.check(data, scores)
        dev = torch.device(device)
        if self.kind == "exact":
            assert isinstance(data, EmbeddedData)
            return data.exact_tangent(), f"tangent space: the exact {data.name} manifold"
        if self.kind in ("pca", "local-pca"):
            ref = self.reference_points(data, max_examples).to(dev)
            where = (
                "the reference file"
                if self.path
                else "the training split"
                if data.reference(1) is not None
                else ("the analysed data")
            )
            if self.kind == "pca":
                dim = min(self.dim, ref.shape[0] - 1) if ref.shape[0] > 1 else 1
                space = LinearSubspace.from_data(ref, dim)
                return space, f"tangent space: PCA of {ref.shape[0]} images of {where} ({dim} directions)"
            n_neighbors = min(ref.shape[0], max(self.dim + 1, 2 * self.dim))
            if n_neighbors <= self.dim:
                raise AnalysisInputError(
                    f"--tangent {self.to_string()} needs more than K={self.dim} reference images but {where} has "
                    f"{ref.shape[0]}"
                )
            space = LocalPCATangent(ref, self.dim, n_neighbors, batch_size=batch_size)
            return space, (
                f"tangent space: local PCA ({self.dim} directions from {n_neighbors} neighbours among "
                f"{ref.shape[0]} images of {where})"
            )
        if self.kind == "decoder":
            return _decoder_tangent(str(self.path), data, dev, batch_size), f"tangent space: decoder of {self.path}"
        source = scores.unconditional_source
        space = DenoiserTangent(
            source, sigma, self.dim, oversampling=min(10, self.dim), iterations=1, chunk_size=min(batch_size, 8)
        )
        return (
            space,
            f"tangent space: {self.dim} leading directions of the unconditional score Jacobian at sigma={sigma:g}",
        )


def _decoder_tangent(path: str, data: DataSource, device: torch.device, batch_size: int) -> Any:
    from ...manifold import DecoderTangent

    if path == "shipped":
        from ...models import digits16_decoder_tangent, shapes32_decoder_tangent

        shipped = shapes32_decoder_tangent if tuple(data.shape) == (3, 32, 32) else digits16_decoder_tangent
        return shipped(device=device)
    p = Path(path)
    shape = tuple(data.shape)
    if p.is_dir():
        config_file = p / "config.json"
        name = json.loads(config_file.read_text()).get("_class_name") if config_file.is_file() else None
        if name != "AutoencoderKL":
            raise AnalysisInputError(
                f"Expected --tangent decoder:{path} to be a diffusers AutoencoderKL folder (config.json with "
                f"_class_name AutoencoderKL) but got {name!r}"
            )
        from diffusers import AutoencoderKL

        from .score import _quiet_diffusers

        _quiet_diffusers()
        vae = AutoencoderKL.from_pretrained(str(p), local_files_only=True).to(device).eval()
        lo, hi = data.data_range
        scale, shift = 2.0 / (hi - lo), -1.0 - 2.0 * lo / (hi - lo)  # the VAE works on [-1, 1] images
        # an affine map of the image changes the tangent directions by the same factor everywhere, so the
        # decoder's column space in data units is the same subspace as in the VAE's units
        return DecoderTangent(
            lambda z: (vae.decode(z).sample - shift) / scale,
            lambda x: vae.encode(x * scale + shift).latent_dist.mean,
            input_shape=shape,
            chunk_size=min(batch_size, 16),
        )
    try:
        module = torch.jit.load(str(p), map_location=device).eval()
    except RuntimeError as err:
        raise AnalysisInputError(
            f"cannot load --tangent decoder:{path} (a TorchScript file with encode and decode methods): "
            f"{str(err).splitlines()[0]}"
        ) from None
    if not (hasattr(module, "encode") and hasattr(module, "decode")):
        raise AnalysisInputError(f"Expected the autoencoder {path!r} to have encode and decode methods")
    return DecoderTangent(module.decode, module.encode, input_shape=shape, chunk_size=min(batch_size, 16))
