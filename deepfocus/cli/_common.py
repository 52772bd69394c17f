"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float"]


def positive_int(text):
    """An ``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    """An ``argparse`` type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
