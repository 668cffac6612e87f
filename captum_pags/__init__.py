"""captum_pags: perceptually-aligned gradients for Captum.

Attribution methods, tangent-space and diffusion-score estimators, metrics and training wrappers
for the analysis of Srinivas, Bordt & Lakkaraju (NeurIPS 2023), "Which Models have
Perceptually-Aligned Gradients? An Explanation via Off-Manifold Robustness".
"""

from .attr import ManifoldGradient, ScoreAttribution
from .datasets import GaussianSubspaceMixture, digits16_subspace, load_digits16
from .manifold import (
    DecoderTangent,
    DenoiserTangent,
    LinearSubspace,
    LocalPCATangent,
    TangentSpace,
    intrinsic_dimension,
    principal_angles,
)
from .metrics import (
    ManifoldRobustness,
    manifold_robustness,
    perceptual_alignment,
    robustness_regime,
    score_alignment,
    tangent_alignment,
)
from .models import MLP, SmallCNN, digits16_decoder_tangent, load_digits16_autoencoder, load_digits16_score_model
from .scores import (
    BayesOptimalClassifier,
    DenoiserScore,
    DiffusersScore,
    GaussianMixtureScore,
    ScoreModel,
    SubspaceGaussianMixtureScore,
)
from .training import (
    PGD,
    AdversarialLoss,
    GradientNormLoss,
    NoiseConsistencyLoss,
    RandomizedSmoothingLoss,
    ScoreAlignmentLoss,
    SmoothedClassifier,
    fit,
)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "PGD",
    "AdversarialLoss",
    "BayesOptimalClassifier",
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
    "manifold_robustness",
    "perceptual_alignment",
    "principal_angles",
    "robustness_regime",
    "score_alignment",
    "tangent_alignment",
]
