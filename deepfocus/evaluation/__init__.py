"""Matching catalogues to truth and measuring their quality (DESIGN section 6).

The example cube shipped with deepfocus, against the true sources it was simulated with (its
faintest source, of S/N 3, is found 3.9 pixels from where it was put, beyond the matching radius):

>>> from importlib.resources import files
>>> from astropy.table import QTable
>>> from deepfocus import DeepFocus
>>> from deepfocus.evaluation import evaluate, format_report
>>> data = files("deepfocus.data")
>>> truth = QTable.read(data / "example_truth.ecsv")
>>> catalog = DeepFocus()(data / "example_dirty.fits", psf=data / "example_psf.fits")
>>> print(format_report(evaluate(truth, catalog)))
Catalogue evaluation
  matching  : within 2.50 pix (beam major 5.01 pix) and max(line FWHM, 2) channels ...
<BLANKLINE>
  truth sources                5
  detections                   5
  matched                      4
  completeness             0.800
  purity                   0.800
  F1                       0.800
  median position error    0.102 pix
<BLANKLINE>
  Completeness by truth S/N
    S/N          n   found  completeness
    <3           0       0           n/a
    3-5          1       0         0.000
    5-10         1       1         1.000
    10-20        2       2         1.000
    >=20         1       1         1.000
<BLANKLINE>
  Accuracy of matched sources with truth S/N >= 5 (n = 4)
    measure                          fraction     n
    flux within 10 %                    1.000     4
    position angle within 10 %          0.667     3
    position angle within 10 deg        0.667     3
    FWHM (major) within 10 %            0.667     3
    line width within 10 %              1.000     4
    median |flux error|                   3.6 %
    median line-centre error            0.155 channels
"""

from .matching import MatchResult, match_catalogs, matched_table
from .metrics import SNR_BINS, evaluate
from .report import evaluate_files, format_report, read_catalog

__all__ = [
    "match_catalogs",
    "MatchResult",
    "matched_table",
    "evaluate",
    "SNR_BINS",
    "format_report",
    "evaluate_files",
    "read_catalog",
]
