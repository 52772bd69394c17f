"""Plots a person can check every result with; each function returns a `matplotlib.figure.Figure`.

- `plot_detections`: the integrated image with the detections as ellipses and ids;
- `plot_source` (`plot_source_cutout`, `plot_source_spectrum`, `source_spectrum`): one source's
  line-integrated cutout and spectrum with its line window and the network's denoised spectrum;
- `plot_deconvolution`: dirty | deconvolved | residual (| true sky);
- `plot_diagnostics` (`plot_completeness`, `plot_measurements`, `completeness_purity`): a
  catalogue against the truth;
- `plot_training_log` (`read_training_log`, `training_curves`): training curves.
- `plot_optimization_history`, `plot_param_importances`, `plot_intermediate_values`
  (`save_study_plots`): a hyper-parameter study (``deepfocus optimize``).

Sky images are drawn on `~astropy.visualization.wcsaxes.WCSAxes` (RA/Dec); nothing calls
``pyplot.show``, so every function works with the non-interactive Agg backend.
"""

from ._common import figure_format, save_figure
from .deconvolution import plot_deconvolution
from .detections import plot_detections
from .diagnostics import completeness_purity, plot_completeness, plot_diagnostics, plot_measurements
from .optimization import (
    plot_intermediate_values,
    plot_optimization_history,
    plot_param_importances,
    save_study_plots,
)
from .sources import plot_source, plot_source_cutout, plot_source_spectrum, source_spectrum
from .training import plot_training_log, read_training_log, training_curves

__all__ = [
    "plot_detections",
    "plot_source",
    "plot_source_cutout",
    "plot_source_spectrum",
    "source_spectrum",
    "plot_deconvolution",
    "plot_diagnostics",
    "plot_completeness",
    "plot_measurements",
    "completeness_purity",
    "plot_training_log",
    "read_training_log",
    "training_curves",
    "save_figure",
    "figure_format",
    "plot_optimization_history",
    "plot_param_importances",
    "plot_intermediate_values",
    "save_study_plots",
]
