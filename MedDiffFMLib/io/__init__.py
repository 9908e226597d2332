"""Volume I/O and geometry: read/write NIfTI, NRRD, MetaImage and DICOM series with SimpleITK,
validate volumes, and convert numpy arrays (z, y, x) + geometry to and from SimpleITK images.

The names below are imported on first use (PEP 562), so that ``io.permissions`` (used by the weights
format and the training cache) works on a machine without SimpleITK, e.g. a GPU training node.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DicomSeries": "dicom_read",
    "list_dicom_series": "dicom_read",
    "Geometry": "geometry",
    "blank_image": "geometry",
    "copy_geometry": "geometry",
    "geometry_of": "geometry",
    "image_from_array": "geometry",
    "same_geometry": "geometry",
    "to_image": "geometry",
    "read_volume": "read",
    "validate_volume": "validate",
    "write_volume": "write",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .dicom_read import DicomSeries, list_dicom_series
    from .geometry import Geometry, blank_image, copy_geometry, geometry_of, image_from_array, same_geometry, to_image
    from .read import read_volume
    from .validate import validate_volume
    from .write import write_volume


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
