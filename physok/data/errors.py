"""Errors the data layer raises for bad input: each message names the file, field or option."""


class DataError(ValueError):
    """Bad data or a bad data option (missing path, unknown dataset, window too long, ...)."""


class WellFormatError(DataError):
    """A file or folder that does not follow The Well's layout, or holds unusable values."""


class StaleDatasetError(DataError):
    """A dataset folder physok generated that does not hold what a request asks for: it was
    generated with other settings (`reason` "settings"), or its files no longer match the record
    made at generation (`reason` "files": `problems` names each file)."""

    def __init__(self, message: str, folder: str, reason: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.folder, self.reason, self.problems = folder, reason, tuple(problems)

    def __reduce__(self) -> tuple:  # raised in generation worker processes: must pickle
        return type(self), (str(self), self.folder, self.reason, self.problems)
