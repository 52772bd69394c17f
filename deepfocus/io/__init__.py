"""Reading and writing cubes, catalogues and regions."""

from .atomic import atomic_path
from .catalog import (
    BEAM_META_KEYS,
    CATALOG_COLUMNS,
    FLAG_BITS,
    SourceFlag,
    read_catalog,
    validate_catalog,
    write_catalog,
)
from .cube import PreparedCube, read_cube, robust_channel_noise
from .psf import PSFPlanes, read_psf
from .regions import catalog_to_regions, write_regions

__all__ = [
    "atomic_path",
    "PSFPlanes",
    "read_psf",
    "BEAM_META_KEYS",
    "CATALOG_COLUMNS",
    "FLAG_BITS",
    "SourceFlag",
    "read_catalog",
    "validate_catalog",
    "write_catalog",
    "catalog_to_regions",
    "write_regions",
    "PreparedCube",
    "read_cube",
    "robust_channel_noise",
]
