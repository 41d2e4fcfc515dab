# SPDX-License-Identifier: GPL-3.0-or-later
"""Exception types whose messages say what went wrong and what to do."""


class SingError(Exception):
    """Base class for errors raised by the sing library."""


class InputError(SingError, ValueError):
    """Bad input from the caller (shape, dtype, NaN, out-of-range values)."""


class CheckpointError(SingError):
    """A model directory is missing, incomplete, corrupted or for another model."""


class DataError(SingError):
    """A data source is missing or unusable."""
