"""Volume I/O and geometry: read/write NIfTI, NRRD, MetaImage and DICOM series with SimpleITK,
validate volumes, and convert numpy arrays (z, y, x) + geometry to and from SimpleITK images.

The names below are imported on first use (see ``MedDiffFMLib._lazy``), so that ``io.permissions``
works on a machine without SimpleITK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

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
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from .dicom_read import DicomSeries, list_dicom_series
    from .geometry import Geometry, blank_image, copy_geometry, geometry_of, image_from_array, same_geometry, to_image
    from .read import read_volume
    from .validate import validate_volume
    from .write import write_volume
