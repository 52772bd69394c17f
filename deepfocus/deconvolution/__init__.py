"""Deconvolution: classical baselines (Högbom CLEAN) and, later, the network Deconvolver."""

from .clean import CleanResult, hogbom_clean

__all__ = ["CleanResult", "hogbom_clean"]
