"""Figures as objects (plotly `Figure`s); nothing here calls `.show()`."""

from interp.viz.heatmaps import layer_head_heatmap

__all__ = ["layer_head_heatmap"]
