"""captum_pags: perceptually-aligned gradients for Captum.

Attribution methods, tangent-space and diffusion-score estimators, metrics and training wrappers
for the analysis of Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have
Perceptually-Aligned Gradients? An Explanation via Off-Manifold Robustness".
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ManifoldGradient": ".attr",
    "ScoreAttribution": ".attr",
    "GaussianSubspaceMixture": ".datasets",
    "digits16_subspace": ".datasets",
    "load_digits16": ".datasets",
    "load_shapes32": ".datasets",
    "render_shapes32": ".datasets",
    "shapes32_tangent": ".datasets",
    "DecoderTangent": ".manifold",
    "DenoiserTangent": ".manifold",
    "LinearSubspace": ".manifold",
    "LocalPCATangent": ".manifold",
    "TangentSpace": ".manifold",
    "intrinsic_dimension": ".manifold",
    "principal_angles": ".manifold",
    "ManifoldRobustness": ".metrics",
    "manifold_robustness": ".metrics",
    "perceptual_alignment": ".metrics",
    "robustness_regime": ".metrics",
    "score_alignment": ".metrics",
    "tangent_alignment": ".metrics",
    "MLP": ".models",
    "ConvNet": ".models",
    "SmallCNN": ".models",
    "digits16_decoder_tangent": ".models",
    "load_digits16_autoencoder": ".models",
    "load_digits16_score_model": ".models",
    "load_shapes32_score_model": ".models",
    "BayesOptimalClassifier": ".scores",
    "DenoiserScore": ".scores",
    "DiffusersScore": ".scores",
    "GaussianMixtureScore": ".scores",
    "ScoreModel": ".scores",
    "SubspaceGaussianMixtureScore": ".scores",
    "PGD": ".training",
    "AdversarialLoss": ".training",
    "GradientNormLoss": ".training",
    "NoiseConsistencyLoss": ".training",
    "RandomizedSmoothingLoss": ".training",
    "ScoreAlignmentLoss": ".training",
    "SmoothedClassifier": ".training",
    "fit": ".training",
}

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "PGD",
    "AdversarialLoss",
    "BayesOptimalClassifier",
    "ConvNet",
    "DecoderTangent",
    "DenoiserScore",
    "DenoiserTangent",
    "DiffusersScore",
    "GaussianMixtureScore",
    "GaussianSubspaceMixture",
    "GradientNormLoss",
    "LinearSubspace",
    "LocalPCATangent",
    "ManifoldGradient",
    "ManifoldRobustness",
    "NoiseConsistencyLoss",
    "RandomizedSmoothingLoss",
    "ScoreAlignmentLoss",
    "ScoreAttribution",
    "ScoreModel",
    "SmallCNN",
    "SmoothedClassifier",
    "SubspaceGaussianMixtureScore",
    "TangentSpace",
    "__version__",
    "digits16_decoder_tangent",
    "digits16_subspace",
    "fit",
    "intrinsic_dimension",
    "load_digits16",
    "load_digits16_autoencoder",
    "load_digits16_score_model",
    "load_shapes32",
    "load_shapes32_score_model",
    "manifold_robustness",
    "perceptual_alignment",
    "principal_angles",
    "render_shapes32",
    "robustness_regime",
    "score_alignment",
    "shapes32_tangent",
    "tangent_alignment",
]


def __getattr__(name: str) -> Any:
    # names are imported on first use (PEP 562): `import captum_pags` stays cheap, e.g. for `captum-pags --help`
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
