"""Order of the examples in the gallery: from the first steps to the whole analysis."""

from __future__ import annotations

from pathlib import Path

ORDER = [
    "plot_quickstart.py",
    "plot_captum_pipeline.py",
    "plot_score_maps.py",
    "plot_tangent_spaces.py",
    "plot_robust_training.py",
    "plot_manifold_robustness.py",
    "plot_your_own_model.py",
]


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``: listed files first, then by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)
