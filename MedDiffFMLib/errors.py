"""User-facing errors: each message names the problem and what to do about it."""

from __future__ import annotations


class MedDiffFMError(Exception):
    """A problem the user can fix (bad input, missing model, not enough memory...).

    The command line prints the message alone (no traceback) and exits with code 2.
    """


class InputError(MedDiffFMError):
    """An input volume, mask or path is unusable."""


class WriteError(InputError):
    """An output could not be written completely (a full disk, a file-size limit, a folder made
    read-only...); nothing was left under its name."""


class ModelError(MedDiffFMError):
    """A model cannot be found, verified or loaded."""


class ModelChecksumError(ModelError):
    """A model file does not match the checksum its manifest records (damaged or changed)."""


class ModelConfigError(ModelError):
    """A model's config (or manifest) cannot be read or is of another format: checksums aside."""


class ResourceError(MedDiffFMError):
    """The work does not fit the memory or device available."""


class CancelledError(MedDiffFMError):
    """The user cancelled the run; nothing was written."""

    def __init__(self, message: str = "Cancelled by the user; nothing was written.") -> None:
        super().__init__(message)
