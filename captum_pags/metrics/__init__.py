"""Metrics in captum.metrics style: alignment, robustness and regimes."""
