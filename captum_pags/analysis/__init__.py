"""The main job: sweep, measure, classify regimes and report."""
