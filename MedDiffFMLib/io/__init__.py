"""Volume I/O and geometry: read/write NIfTI, NRRD, MetaImage and DICOM series with SimpleITK,
validate volumes, and convert numpy arrays (z, y, x) + geometry to and from SimpleITK images."""

from .dicom_read import DicomSeries, list_dicom_series
from .geometry import (
    Geometry,
    blank_image,
    copy_geometry,
    geometry_of,
    image_from_array,
    same_geometry,
    to_image,
)
from .read import read_volume
from .validate import validate_volume
from .write import write_volume

__all__ = [
    "DicomSeries",
    "Geometry",
    "blank_image",
    "copy_geometry",
    "geometry_of",
    "image_from_array",
    "list_dicom_series",
    "read_volume",
    "same_geometry",
    "to_image",
    "validate_volume",
    "write_volume",
]
