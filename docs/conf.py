# Licensed under a 3-clause BSD style license - see LICENSE
"""Sphinx configuration of the deepfocus documentation.

Build with::

    cd docs && sphinx-build -W -b html . _build/html

The build works offline: intersphinx (links to the Python, numpy, astropy, ... documentation) is
turned off when ``DEEPFOCUS_DOCS_OFFLINE=1`` is set or when the documentation sites cannot be
reached, so that ``-W`` does not turn failed inventory downloads into errors. Set
``DEEPFOCUS_DOCS_OFFLINE=0`` to force intersphinx on.
"""

import datetime
import importlib.util
import os
import socket
import sys
import threading
from pathlib import Path

from sphinx_astropy.conf.v2 import *  # noqa: F401, F403
from sphinx_astropy.conf.v2 import extensions as _astropy_extensions
from sphinx_astropy.conf.v2 import intersphinx_mapping as _astropy_intersphinx

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

from deepfocus.version import __version__  # noqa: E402

# -- Project information -----------------------------------------------------------------------

project = "deepfocus"
author = "deepfocus developers"
copyright = f"{datetime.date.today().year}, {author}"
version = __version__.split("+")[0]
release = __version__

# -- General configuration ---------------------------------------------------------------------


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# sphinx-astropy lists a few optional extensions (e.g. sphinx_copybutton): keep those that are
# installed, so that a minimal environment still builds.
extensions = [ext for ext in _astropy_extensions if _importable(ext)] + [
    "sphinx.ext.doctest",
    "deepfocus_sphinx",  # docs/_ext: the CLI help and the optional include directives
]

exclude_patterns = ["_build", "_generated", "_scripts", "_ext"]
templates_path = []
html_static_path = ["_static"]

# Unresolved cross-references are not errors (and cannot all resolve offline).
nitpicky = False

# Cross-referencing parameter types of numpydoc docstrings is left off: with intersphinx off,
# they would not resolve anyway.
numpydoc_xref_param_type = False

# -- intersphinx ---------------------------------------------------------------------------------

intersphinx_mapping = dict(_astropy_intersphinx)
intersphinx_mapping.update(
    {
        "python": ("https://docs.python.org/3/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "spectral_cube": ("https://spectral-cube.readthedocs.io/en/latest/", None),
        "radio_beam": ("https://radio-beam.readthedocs.io/en/latest/", None),
        "regions": ("https://astropy-regions.readthedocs.io/en/stable/", None),
        "photutils": ("https://photutils.readthedocs.io/en/stable/", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
    }
)
intersphinx_timeout = 10


def _online(host="docs.python.org", port=443, timeout=3.0):
    """Whether ``host`` answers within ``timeout`` seconds (name lookup included)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    return bool(result)


_offline_flag = os.environ.get("DEEPFOCUS_DOCS_OFFLINE", "").strip().lower()
if _offline_flag in ("1", "true", "yes"):
    DOCS_OFFLINE = True
elif _offline_flag in ("0", "false", "no"):
    DOCS_OFFLINE = False
else:
    DOCS_OFFLINE = not _online()

if DOCS_OFFLINE:
    # Only local inventories (none that must be downloaded): references to other projects'
    # documentation render as plain text instead of links.
    intersphinx_mapping = {
        key: value
        for key, value in intersphinx_mapping.items()
        if isinstance(value[1], str) and os.path.isfile(value[1])
    }

# -- automodapi ----------------------------------------------------------------------------------

automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False

# -- Options for HTML output ---------------------------------------------------------------------

html_title = f"{project} v{release}"
html_theme_options = dict(html_theme_options)  # noqa: F405 (from sphinx_astropy.conf.v2)
html_theme_options.update(
    {
        "icon_links": [],
        "navigation_with_keys": False,
    }
)
htmlhelp_basename = project + "doc"

# -- Options for the linkcheck builder -----------------------------------------------------------

linkcheck_anchors = False
