"""Matching catalogues to truth and measuring their quality (DESIGN section 6).

>>> from deepfocus.evaluation import evaluate, format_report  # doctest: +SKIP
>>> print(format_report(evaluate(sim.truth, catalog)))  # doctest: +SKIP
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
