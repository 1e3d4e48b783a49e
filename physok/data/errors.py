"""Errors the data layer raises for bad input: each message names the file, field or option."""


class DataError(ValueError):
    """Bad data or a bad data option (missing path, unknown dataset, window too long, ...)."""


class WellFormatError(DataError):
    """A file or folder that does not follow The Well's layout, or holds unusable values."""
