"""Exceptions and warnings raised by deepfocus."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["DeepFocusError", "InvalidInputError", "NoDetectionsWarning", "DeepFocusWarning"]


class DeepFocusError(Exception):
    """Base class of every error deepfocus raises on purpose."""


class InvalidInputError(DeepFocusError, ValueError):
    """Input data, a file or a parameter that deepfocus cannot use (the message says why)."""


class DeepFocusWarning(AstropyUserWarning):
    """Base class of deepfocus warnings."""


class NoDetectionsWarning(DeepFocusWarning):
    """No source was found in the data."""
