"""Plots: moment maps with detections, and (later) diagnostics."""

from .detections import plot_detections

__all__ = ["plot_detections"]
